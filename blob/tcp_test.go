package blob

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/cluster/clustertest"
	"github.com/slipwayhq/slipway/fsm"
)

// freePort returns a port free for TCP and UDP on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
		l.Close()
		if err == nil {
			u.Close()
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// tcpCluster starts real cluster nodes on loopback TCP (one per zone, as
// in `slipway dev`) with a blob store each, and waits for a leader.
func tcpCluster(t testing.TB, zones ...string) []*Store {
	t.Helper()
	type node struct {
		name, zone             string
		raft, gossip, rpc, dir string
	}
	var nodes []node
	for i, z := range zones {
		nodes = append(nodes, node{name: fmt.Sprintf("t%d", i+1), zone: z,
			raft: strconv.Itoa(freePort(t)), gossip: strconv.Itoa(freePort(t)), rpc: strconv.Itoa(freePort(t)), dir: t.TempDir()})
	}
	var join []string
	for _, n := range nodes {
		join = append(join, "127.0.0.1:"+n.gossip)
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var stores []*Store
	var cns []*cluster.Node
	for _, n := range nodes {
		atoi := func(s string) int { v, _ := strconv.Atoi(s); return v }
		f, err := fsm.New(logger)
		if err != nil {
			t.Fatal(err)
		}
		cn, err := cluster.New(cluster.Config{NodeName: n.name, Region: "test", Zone: n.zone, DataDir: n.dir,
			BindAddr: "127.0.0.1", RaftPort: atoi(n.raft), GossipPort: atoi(n.gossip), RPCPort: atoi(n.rpc),
			Join: join, BootstrapExpect: len(nodes), Voters: 3, DeadServerGrace: time.Hour, ServerStabilization: time.Second,
			LastContactThreshold: 2 * time.Second, EncryptKey: []byte("0123456789abcdef0123456789abcdef"),
			Version: "test", CommandVersion: fsm.CommandVersion, Timing: clustertest.TestTiming(), Logger: logger.With("node", n.name)}, f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cn.Kill)
		s, err := New(Config{Dir: n.dir + "/blobs", MinFreeBytes: -1, Logger: logger.With("node", n.name)}, cn, nodeState{cn, f})
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
		cns = append(cns, cn)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		alive := 0
		for _, m := range cns[0].Members() {
			if m.State == cluster.StateAlive {
				alive++
			}
		}
		if cns[0].Leader() != "" && alive == len(cns) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return stores
}

// heapPeak samples the heap while f runs and returns the largest growth
// over the heap in use before.
func heapPeak(f func()) (peak uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var max atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > base && ms.HeapAlloc-base > max.Load() {
				max.Store(ms.HeapAlloc - base)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(stop)
	wg.Wait()
	return max.Load()
}

// TestLargePutIsStreamed puts a 256 MB generated stream through a real
// 3-node cluster (loopback TCP, replication to another zone) and checks the
// heap never grows by more than a few tens of MB: nothing is buffered.
func TestLargePutIsStreamed(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 512 MB to disk")
	}
	stores := tcpCluster(t, "a", "b", "c")
	const size = 256 << 20
	var st *Stored
	var err error
	peak := heapPeak(func() {
		st, err = stores[0].Put(context.Background(), "slug", newPRNG(7, size), "")
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != size || len(st.Replicas) != 2 || len(st.Zones) != 2 {
		t.Fatalf("stored = %+v", st)
	}
	t.Logf("put of %d MB: heap grew by at most %.1f MB", size>>20, float64(peak)/(1<<20))
	if peak > 40<<20 {
		t.Fatalf("heap grew by %.1f MB while putting %d MB: the blob is buffered", float64(peak)/(1<<20), size>>20)
	}
	// Reading it back from a node without a copy is streamed too.
	var other *Store
	for _, s := range stores {
		if !slices.Contains(st.Replicas, s.c.Name()) {
			other = s
		}
	}
	var n int64
	peak = heapPeak(func() {
		rc, _, oerr := other.Open(context.Background(), st.Digest)
		if oerr != nil {
			err = oerr
			return
		}
		n, err = io.Copy(io.Discard, rc)
		rc.Close()
	})
	if err != nil || n != size {
		t.Fatalf("remote read: %v, %d bytes", err, n)
	}
	t.Logf("remote open of %d MB: heap grew by at most %.1f MB", size>>20, float64(peak)/(1<<20))
	if peak > 40<<20 {
		t.Fatalf("heap grew by %.1f MB while reading %d MB", float64(peak)/(1<<20), size>>20)
	}
}

// BenchmarkPutReplicated measures blob write throughput with replication
// to a second zone on a real 3-node cluster (loopback TCP, fsync'd files):
//
//	go test -run XXX -bench PutReplicated -benchtime 10x ./blob
func BenchmarkPutReplicated(b *testing.B) {
	for _, size := range []int64{1 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("%dMB", size>>20), func(b *testing.B) {
			stores := tcpCluster(b, "a", "b", "c")
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				st, err := stores[i%3].Put(context.Background(), "slug", newPRNG(byte(i), size), "")
				if err != nil {
					b.Fatal(err)
				}
				if len(st.Zones) != 2 {
					b.Fatalf("zones %v", st.Zones)
				}
			}
		})
	}
}
