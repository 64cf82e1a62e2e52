package main

import (
	"bytes"
	"testing"
)

func TestExitScannerStripsMarkerAcrossWrites(t *testing.T) {
	for _, split := range []int{1, 3, 7, 20} {
		var out bytes.Buffer
		s := &exitScanner{w: &out}
		stream := "hello\nworld\n" + exitMarker + "42\n"
		for i := 0; i < len(stream); i += split {
			s.Write([]byte(stream[i:min(i+split, len(stream))]))
		}
		s.flush()
		if out.String() != "hello\nworld\n" || s.code != 42 {
			t.Fatalf("split %d: out %q code %d", split, out.String(), s.code)
		}
	}
	var out bytes.Buffer
	s := &exitScanner{w: &out}
	s.Write([]byte("no marker\n"))
	s.flush()
	if s.code != -1 || out.String() != "no marker\n" {
		t.Fatalf("without a marker: code %d out %q", s.code, out.String())
	}
}
