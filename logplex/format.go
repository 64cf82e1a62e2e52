package logplex

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxLineBytes is the longest message Logplex carries: longer lines are
// split into several lines of at most this many bytes (Heroku's limit).
const MaxLineBytes = 10000

// TimeFormat is how lines show their time: RFC 3339 in UTC with
// microseconds, as Heroku prints them (2024-01-01T00:00:00.000000+00:00).
const TimeFormat = "2006-01-02T15:04:05.000000-07:00"

// FormatTime formats t as TimeFormat in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// Display is a line as `heroku logs` shows it: "TS source[proc]: text".
func Display(l Line) string {
	var b strings.Builder
	b.Grow(len(l.Text) + len(l.Proc) + 48)
	b.WriteString(FormatTime(l.Time))
	b.WriteByte(' ')
	b.WriteString(l.Source)
	b.WriteByte('[')
	b.WriteString(l.Proc)
	b.WriteString("]: ")
	b.WriteString(l.Text)
	return b.String()
}

// Syslog priorities of the lines: local7.info for app output, local3.info
// for platform lines (Heroku's router lines carry <158>) and local5.warning
// for Logplex's own error notices.
const (
	priApp     = 190
	priHeroku  = 158
	priLogplex = 172
)

// ProcLogplex is the process name of Logplex's own notices (L10, L11, ...).
const ProcLogplex = "logplex"

func priority(l *Line) int {
	switch {
	case l.Source == SourceApp:
		return priApp
	case l.Proc == ProcLogplex:
		return priLogplex
	}
	return priHeroku
}

// AppendRFC5424 appends l as an RFC 5424 message with hostname host:
// "<PRI>1 TIMESTAMP HOST APP-NAME PROCID MSGID SD MSG". APP-NAME is the
// source (app or heroku), PROCID the process (web.1, router, api). With
// structuredData the MSGID and STRUCTURED-DATA fields are both NILVALUE
// ("- -", strict RFC 5424, what syslog drains get); without it only the
// MSGID is, which is the exact form of Heroku's HTTPS drain messages.
func AppendRFC5424(dst []byte, l *Line, host string, structuredData bool) []byte {
	dst = append(dst, '<')
	dst = strconv.AppendInt(dst, int64(priority(l)), 10)
	dst = append(dst, ">1 "...)
	dst = l.Time.UTC().AppendFormat(dst, TimeFormat)
	dst = append(dst, ' ')
	dst = appendHeaderField(dst, host, 255)
	dst = append(dst, ' ')
	dst = appendHeaderField(dst, l.Source, 48)
	dst = append(dst, ' ')
	dst = appendHeaderField(dst, l.Proc, 128)
	if structuredData {
		dst = append(dst, " - - "...)
	} else {
		dst = append(dst, " - "...)
	}
	return append(dst, l.Text...)
}

// appendHeaderField appends an RFC 5424 header field: printable US-ASCII
// without spaces, at most max bytes, "-" when empty.
func appendHeaderField(dst []byte, s string, max int) []byte {
	if s == "" {
		return append(dst, '-')
	}
	if len(s) > max {
		s = s[:max]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		dst = append(dst, c)
	}
	return dst
}

// AppendOctetFrame appends msg framed by octet counting (RFC 6587 §3.4.1,
// also the framing of application/logplex-1 bodies): "LEN SP MSG".
func AppendOctetFrame(dst, msg []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(msg)), 10)
	dst = append(dst, ' ')
	return append(dst, msg...)
}

// SplitText turns what a process wrote into safe log lines: one line per
// newline-separated part (a trailing newline ends the last line rather than
// starting an empty one), each made safe by Sanitize and split into pieces
// of at most MaxLineBytes bytes.
func SplitText(text string) []string {
	text = strings.TrimSuffix(text, "\n")
	if strings.IndexByte(text, '\n') < 0 && len(text) <= MaxLineBytes && isClean(text) {
		return []string{text} // the common case: no copy
	}
	var out []string
	for part := range strings.SplitSeq(text, "\n") {
		part = Sanitize(strings.TrimSuffix(part, "\r"))
		for len(part) > MaxLineBytes {
			cut := MaxLineBytes
			for cut > 0 && !utf8.RuneStart(part[cut]) {
				cut--
			}
			out = append(out, part[:cut])
			part = part[cut:]
		}
		out = append(out, part)
	}
	return out
}

// isClean reports whether s is valid UTF-8 without control characters
// other than tab (so Sanitize would return it unchanged).
func isClean(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return utf8.ValidString(s[i:]) && !hasC1(s[i:])
		}
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func hasC1(s string) bool {
	for _, r := range s {
		if r >= 0x80 && r <= 0x9f {
			return true
		}
	}
	return false
}

// Sanitize makes one line safe for every consumer (terminals, SSE, syslog
// receivers): invalid UTF-8 becomes U+FFFD; control characters become
// visible escapes (\x07, \r, \u0085) except tab and ANSI colour sequences
// (ESC [ digits/semicolons m), which terminals render and Heroku passes on.
func Sanitize(s string) string {
	if isClean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			b.WriteRune(utf8.RuneError)
		case r == 0x1b:
			if n := sgrLen(s[i:]); n > 0 {
				b.WriteString(s[i : i+n])
				i += n
				continue
			}
			b.WriteString(`\x1b`)
		case r == '\t':
			b.WriteByte('\t')
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\x`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&0xf])
		case r >= 0x80 && r <= 0x9f:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&0xf])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// sgrLen returns the length of an ANSI SGR sequence (ESC [ 0-9; m) at the
// start of s, or 0.
func sgrLen(s string) int {
	if len(s) < 3 || s[0] != 0x1b || s[1] != '[' {
		return 0
	}
	for i := 2; i < len(s) && i < 32; i++ {
		c := s[i]
		switch {
		case c == 'm':
			return i + 1
		case (c >= '0' && c <= '9') || c == ';':
		default:
			return 0
		}
	}
	return 0
}
