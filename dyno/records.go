package dyno

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// records persists one Record per running dyno instance, so that the next
// agent can adopt it.
type records struct{ dir string }

func (r records) path(rec Record) string {
	return filepath.Join(r.dir, containerID(rec.DynoID, rec.Instance)+".json")
}

func (r records) save(rec Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("dyno record: %w", err)
	}
	tmp, err := os.CreateTemp(r.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("dyno record: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("dyno record: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("dyno record: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("dyno record: %w", err)
	}
	if err := os.Rename(tmp.Name(), r.path(rec)); err != nil {
		return fmt.Errorf("dyno record: %w", err)
	}
	return nil
}

// remove forgets a record (a stale one is harmless: the next agent finds
// its process gone).
func (r records) remove(rec Record) { _ = os.Remove(r.path(rec)) }

// load reads every record; unreadable ones are removed.
func (r records) load() []Record {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return nil
	}
	var out []Record
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(r.dir, e.Name())
		b, err := os.ReadFile(p)
		var rec Record
		if err != nil || json.Unmarshal(b, &rec) != nil || rec.DynoID == "" || rec.Instance == "" {
			_ = os.Remove(p)
			continue
		}
		out = append(out, rec)
	}
	return out
}
