package logplex

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks (go test -run XXX -bench . -benchtime 200000x ./logplex):
//
//   - BenchmarkEmit: ingest alone (history and fan-out, no consumer).
//   - BenchmarkDrain/{syslog,https}: lines/s one node ingests and delivers
//     to one drain, end to end (every line reaches the receiver).
//   - BenchmarkTailLatency/{local,remote}: time from Emit to the line read
//     by an SSE client of a tail session, on the same node and across
//     nodes (in-process cluster, internal RPC stream).
//   - BenchmarkHistoryMemory: heap per app holding 1,500 lines of 100 bytes.

const benchText = "at=info method=GET path=\"/api/items?page=2\" host=demo.example.com status=200 bytes=5123 service=12ms"

func BenchmarkEmit(b *testing.B) {
	p := New(Options{NodeName: "n1", InputRate: MaxInputRate})
	defer p.Close()
	l := Line{AppID: "app", AppName: "demo", Source: SourceApp, Proc: "web.1", Text: benchText}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.Emit(l)
	}
}

func BenchmarkDrain(b *testing.B) {
	for _, scheme := range []string{"syslog", "https"} {
		b.Run(scheme, func(b *testing.B) {
			st := newTestState(b)
			app := st.createApp("demo")
			var received func() int
			var tlsConf *tls.Config
			switch scheme {
			case "syslog":
				r := newFrameReceiver(b)
				received = func() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.msgs) }
				st.addDrain(app, "syslog://"+r.addr)
			default:
				var n atomic.Int64
				srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					c, _ := strconv.Atoi(r.Header.Get("Logplex-Msg-Count"))
					n.Add(int64(c))
				}))
				defer srv.Close()
				pool := x509.NewCertPool()
				pool.AddCert(srv.Certificate())
				tlsConf = &tls.Config{RootCAs: pool}
				received = func() int { return int(n.Load()) }
				st.addDrain(app, srv.URL+"/logs")
			}
			// A buffer as big as the run, so the figure is delivery, not drops.
			p := New(Options{NodeName: "n1", State: st, InputRate: MaxInputRate, DrainBuffer: b.N + 1, DrainTLS: tlsConf})
			defer p.Close()
			eventually(b, 5*time.Second, "drain worker", func() error {
				if len((*p.drains.Load())[app]) != 1 {
					return fmt.Errorf("no worker")
				}
				return nil
			})
			l := Line{AppID: app, Source: SourceApp, Proc: "web.1", Text: benchText}
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				p.Emit(l)
			}
			for received() < b.N {
				time.Sleep(time.Millisecond)
			}
			el := time.Since(start)
			b.ReportMetric(float64(b.N)/el.Seconds(), "lines/s")
		})
	}
}

// tailLatency emits lines on src while an SSE client reads a tail session
// served by dst, and reports the p50 and p99 of emit → read.
func tailLatency(b *testing.B, src, dst *Pipeline, app string) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dst.ServeSession(w, r, strings.TrimPrefix(r.URL.Path, "/"))
	}))
	defer srv.Close()
	sess, err := dst.NewSession(app, SessionRequest{Tail: true})
	if err != nil {
		b.Fatal(err)
	}
	resp, err := http.Get(srv.URL + "/" + sess.Token)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	seen := make(chan int, 1024)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if _, rest, ok := strings.Cut(sc.Text(), "]: probe "); ok {
				if i, err := strconv.Atoi(rest); err == nil {
					seen <- i
				}
			}
		}
		close(seen)
	}()
	// Wait until the tail is subscribed everywhere.
	for i := -1; ; i-- {
		src.Emit(Line{AppID: app, Source: SourceApp, Proc: "web.1", Text: fmt.Sprint("probe ", i)})
		select {
		case <-seen:
		case <-time.After(200 * time.Millisecond):
			continue
		}
		break
	}
	for len(seen) > 0 {
		<-seen
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		src.Emit(Line{AppID: app, Source: SourceApp, Proc: "web.1", Text: fmt.Sprint("probe ", i)})
		for got := range seen {
			if got == i {
				break
			}
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func BenchmarkTailLatency(b *testing.B) {
	b.Run("local", func(b *testing.B) {
		p := New(Options{NodeName: "n1", InputRate: MaxInputRate})
		defer p.Close()
		tailLatency(b, p, p, "app")
	})
	b.Run("remote", func(b *testing.B) {
		_, pipes, app := benchRegion(b)
		tailLatency(b, pipes["n2"], pipes["n1"], app)
	})
}

func BenchmarkHistoryMemory(b *testing.B) {
	// One measurement, whatever b.N (run with -benchtime 1x).
	const apps = 50
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	p := New(Options{NodeName: "n1", InputRate: MaxInputRate})
	defer p.Close()
	for a := 0; a < apps; a++ {
		id := fmt.Sprintf("app-%d", a)
		for j := 0; j < DefaultHistoryLines+100; j++ {
			// Distinct strings, as lines read from a process are.
			p.Emit(Line{AppID: id, AppName: "demo", Source: SourceApp, Proc: "web.1", Text: strings.Clone(benchText)})
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if st := p.Stats(); st.HistoryLines != apps*DefaultHistoryLines {
		b.Fatalf("history lines %d", st.HistoryLines)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/apps, "bytes/app")
	for i := 0; i < b.N; i++ {
	}
}
