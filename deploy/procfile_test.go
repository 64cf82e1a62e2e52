package deploy

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/fsm"
)

func TestParseProcfile(t *testing.T) {
	got, err := ParseProcfile([]byte("\xef\xbb\xbf# comment\r\nweb: bin/web --port $PORT\n\nworker:bin/worker\r\nrelease :  ./migrate.sh  \n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"web": "bin/web --port $PORT", "worker": "bin/worker", "release": "./migrate.sh"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v", got)
	}
	if names := processTypeNames(got); !reflect.DeepEqual(names, []string{"web", "release", "worker"}) {
		t.Fatalf("names %v", names)
	}
	for _, bad := range []struct{ in, want string }{
		{"web bin/web\n", "line 1"},
		{"web: a\nweb: b\n", "declared twice"},
		{"web:\n", "has no command"},
		{"we b: x\n", "not of the form"},
		{strings.Repeat("a", MaxProcfileBytes+1), "larger than"},
	} {
		_, err := ParseProcfile([]byte(bad.in))
		var pe *ProcfileError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: err %v, want %q", bad.in, err, bad.want)
		}
	}
	if got, err := ParseProcfile(nil); err != nil || len(got) != 0 {
		t.Fatalf("empty Procfile: %v %v", got, err)
	}
}

// FuzzParseProcfile: the parser never panics, and what it accepts is a
// valid set of process types for a slug.
func FuzzParseProcfile(f *testing.F) {
	for _, s := range []string{"web: bin/web\n", "web: a\nworker: b\n# c\n", "release: x\r\n", ":", "a:\n", "\xef\xbb\xbf"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pt, err := ParseProcfile(b)
		if err != nil {
			return
		}
		if len(pt) == 0 {
			return
		}
		if e := fsm.ValidProcessTypes(pt); e != nil {
			t.Fatalf("accepted %q but fsm refuses it: %v", b, e)
		}
	})
}
