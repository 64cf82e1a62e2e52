package fsm

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

func FuzzDecodeCommand(f *testing.F) {
	f.Add([]byte(`{"type":"app.create","v":1,"id":"x","at":"2026-01-01T00:00:00Z","data":{}}`))
	f.Add([]byte(`{"type":"config.update","v":1,"id":"y","data":{"changes":{"A":null}}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			if _, ok := AsError(err); !ok {
				t.Fatalf("decode error is not an *Error: %v", err)
			}
			return
		}
		if c.Type == "" || c.ID == "" || c.V < 1 || c.V > CommandVersion {
			t.Fatalf("accepted invalid command %+v", c)
		}
	})
}

// FuzzApply feeds arbitrary payloads to every command type on top of a small
// state: apply must never panic, and a rejected command must leave the state
// exactly as it was.
func FuzzApply(f *testing.F) {
	f.Add(CmdConfigUpdate, []byte(`{"app_id":"APP","changes":{"A":"1","B":null},"release_id":"`+uuid.NewString()+`"}`))
	f.Add(CmdFormationUpdate, []byte(`{"app_id":"APP","updates":[{"type":"web","quantity":-1}]}`))
	f.Add(CmdAppUpdate, []byte(`{"app_id":"APP","name":"x"}`))
	f.Add(CmdDomainCreate, []byte(`{"domain":{"id":"`+uuid.NewString()+`","app_id":"APP","hostname":"a.b"}}`))
	f.Add(CmdReleaseRollback, []byte(`{"app_id":"APP","target_id":"nope","release_id":"r"}`))
	f.Add(CmdAppDelete, []byte(`{"app_id":"APP"}`))
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		h := newHarness(t)
		app := h.createApp("demo")
		h.deploy(app.ID, map[string]string{"web": "w"})
		data = []byte(replaceAll(string(data), "APP", app.ID))
		before := h.snapshotWithoutRequests()
		c := Command{Type: typ, V: 1, ID: uuid.NewString(), At: time.Now().UTC(), Data: data}
		b, err := c.Encode()
		if err != nil {
			return
		}
		h.index++
		r := h.f.ApplyCommand(h.index, b)
		if r.Err != nil && string(h.snapshotWithoutRequests()) != string(before) {
			t.Fatalf("rejected %s changed the state", typ)
		}
	})
}

func replaceAll(s, old, new string) string {
	out := ""
	for {
		i := indexOf(s, old)
		if i < 0 {
			return out + s
		}
		out += s[:i] + new
		s = s[i+len(old):]
	}
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func (h *harness) snapshotWithoutRequests() []byte {
	var out []byte
	for _, line := range splitLines(h.snapshot()) {
		if len(line) > 15 && string(line[:15]) == `{"t":"requests"` {
			continue
		}
		out = append(out, line...)
		out = append(out, '\n')
	}
	return out
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, b[start:i])
			start = i + 1
		}
	}
	return out
}
