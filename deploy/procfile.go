package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// MaxProcfileBytes bounds a Procfile.
const MaxProcfileBytes = 64 << 10

var procfileLineRE = regexp.MustCompile(`^([A-Za-z0-9_-]{1,128})\s*:\s*(.*)$`)

// ProcfileError says why a Procfile cannot be used.
type ProcfileError struct {
	Line   int // 1-based; 0 for the whole file
	Reason string
}

func (e *ProcfileError) Error() string {
	if e.Line == 0 {
		return "Procfile: " + e.Reason
	}
	return fmt.Sprintf("Procfile line %d: %s", e.Line, e.Reason)
}

// ParseProcfile parses a Procfile: one "type: command" per line; blank
// lines and lines starting with # are ignored. Process types are letters,
// digits, "_" and "-"; every command must be non-empty and a type may not
// appear twice.
func ParseProcfile(b []byte) (map[string]string, error) {
	if len(b) > MaxProcfileBytes {
		return nil, &ProcfileError{Reason: fmt.Sprintf("larger than %d bytes", MaxProcfileBytes)}
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), MaxProcfileBytes+1)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.ContainsRune(line, 0) {
			return nil, &ProcfileError{Line: n, Reason: "contains a NUL byte"}
		}
		m := procfileLineRE.FindStringSubmatch(line)
		if m == nil {
			return nil, &ProcfileError{Line: n, Reason: fmt.Sprintf("%q is not of the form `type: command` (types use letters, digits, _ and -)", truncateText(line, 60))}
		}
		typ, cmd := m[1], strings.TrimSpace(m[2])
		if cmd == "" {
			return nil, &ProcfileError{Line: n, Reason: fmt.Sprintf("process type %s has no command", typ)}
		}
		if _, dup := out[typ]; dup {
			return nil, &ProcfileError{Line: n, Reason: fmt.Sprintf("process type %s is declared twice", typ)}
		}
		out[typ] = cmd
	}
	if err := sc.Err(); err != nil {
		return nil, &ProcfileError{Reason: err.Error()}
	}
	return out, nil
}

// processTypeNames lists types sorted, web first.
func processTypeNames(pt map[string]string) []string {
	names := make([]string, 0, len(pt))
	for k := range pt {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == "web") != (names[j] == "web") {
			return names[i] == "web"
		}
		return names[i] < names[j]
	})
	return names
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
