package logplex

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)

func TestRFC5424(t *testing.T) {
	app := Line{AppID: "a", Time: t0, Source: SourceApp, Proc: "web.1", Text: "hello world"}
	got := string(AppendRFC5424(nil, &app, "d.123", true))
	want := "<190>1 2026-01-02T03:04:05.123456+00:00 d.123 app web.1 - - hello world"
	if got != want {
		t.Fatalf("syslog form:\n got %q\nwant %q", got, want)
	}
	got = string(AppendRFC5424(nil, &app, "host", false))
	want = "<190>1 2026-01-02T03:04:05.123456+00:00 host app web.1 - hello world"
	if got != want {
		t.Fatalf("https form:\n got %q\nwant %q", got, want)
	}
	router := Line{Time: t0.In(time.FixedZone("x", 3600)), Source: SourceHeroku, Proc: "router", Text: "at=info"}
	if got := string(AppendRFC5424(nil, &router, "host", false)); got != "<158>1 2026-01-02T03:04:05.123456+00:00 host heroku router - at=info" {
		t.Fatalf("router line: %q", got)
	}
	l10 := Line{Time: t0, Source: SourceHeroku, Proc: ProcLogplex, Text: "Error L10"}
	if got := string(AppendRFC5424(nil, &l10, "h", true)); !strings.HasPrefix(got, "<172>1 ") {
		t.Fatalf("logplex notice: %q", got)
	}
	// Header fields never contain spaces; empty ones are NILVALUE.
	odd := Line{Time: t0, Source: SourceApp, Proc: "", Text: "x"}
	if got := string(AppendRFC5424(nil, &odd, "a b", true)); got != "<190>1 2026-01-02T03:04:05.123456+00:00 a_b app - - - x" {
		t.Fatalf("odd fields: %q", got)
	}
}

func TestOctetFrame(t *testing.T) {
	if got := string(AppendOctetFrame([]byte("x"), []byte("héllo"))); got != "x6 héllo" {
		t.Fatalf("frame = %q", got)
	}
	// Heroku's documented logplex-1 example: 83 bytes including the newline.
	l := Line{Time: time.Date(2012, 11, 30, 6, 45, 29, 0, time.UTC), Source: SourceApp, Proc: "web.3", Text: "State changed from starting to up"}
	msg := AppendRFC5424(nil, &l, "host", false)
	msg = append(msg, '\n')
	// Heroku's example has <40> and whole seconds; ours has <190> and
	// microseconds: 1 + 7 more bytes.
	if len(msg) != 83+1+7 {
		t.Fatalf("message length %d: %q", len(msg), msg)
	}
}

func TestDisplay(t *testing.T) {
	l := Line{Time: t0, Source: SourceApp, Proc: "web.1", Text: "hi"}
	if got := Display(l); got != "2026-01-02T03:04:05.123456+00:00 app[web.1]: hi" {
		t.Fatalf("display = %q", got)
	}
}

func TestSanitize(t *testing.T) {
	cases := map[string]string{
		"plain":                  "plain",
		"tab\there":              "tab\there",
		"bell\a!":                `bell\x07!`,
		"nul\x00":                `nul\x00`,
		"cr\rx":                  `cr\rx`,
		"\x1b[1;32mgreen\x1b[0m": "\x1b[1;32mgreen\x1b[0m",
		"\x1b]0;title\x07":       `\x1b]0;title\x07`,
		"bad\xffutf8":            "bad\uFFFDutf8",
		"c1\u0085":               `c1\u0085`,
		"del\x7f":                `del\x7f`,
		"ünïcødé ✓":              "ünïcødé ✓",
		"\x1b[":                  `\x1b[`,
		"\x1b[99999999999999999999999999999999999m": `\x1b[99999999999999999999999999999999999m`,
	}
	for in, want := range cases {
		if got := Sanitize(in); got != want {
			t.Errorf("Sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitText(t *testing.T) {
	if got := SplitText("one\ntwo\r\n"); len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Fatalf("split = %q", got)
	}
	if got := SplitText(""); len(got) != 1 || got[0] != "" {
		t.Fatalf("empty = %q", got)
	}
	long := strings.Repeat("é", 7000) // 14,000 bytes
	got := SplitText(long)
	if len(got) != 2 || len(got[0]) != 10000 || len(got[1]) != 4000 {
		t.Fatalf("long line split into %d pieces", len(got))
	}
	for _, p := range got {
		if !utf8.ValidString(p) {
			t.Fatalf("piece is not valid UTF-8")
		}
	}
	if strings.Join(got, "") != long {
		t.Fatalf("pieces lost bytes")
	}
	exact := strings.Repeat("a", MaxLineBytes)
	if got := SplitText(exact); len(got) != 1 {
		t.Fatalf("a line of exactly MaxLineBytes was split")
	}
}

func FuzzSplitText(f *testing.F) {
	for _, s := range []string{"", "a\nb", "\x1b[31mred", "\xff\xfe", strings.Repeat("ü", 6000), "a\r\n\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range SplitText(s) {
			if len(p) > MaxLineBytes {
				t.Fatalf("piece of %d bytes", len(p))
			}
			if !utf8.ValidString(p) {
				t.Fatalf("invalid UTF-8 in %q", p)
			}
			for i := 0; i < len(p); i++ {
				c := p[i]
				if c == '\n' || c == '\r' || c == 0 || c == 0x7f {
					t.Fatalf("control byte %#x in %q", c, p)
				}
				if c == 0x1b && sgrLen(p[i:]) == 0 {
					t.Fatalf("bare ESC in %q", p)
				}
			}
		}
	})
}
