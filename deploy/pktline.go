package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Git's pkt-line framing (gitprotocol-common): a 4-hex-digit length that
// counts itself, then the payload; "0000" is a flush.

const maxPktLen = 65520

var errFlush = errors.New("flush packet")

// readPkt reads one pkt-line; it returns errFlush for a flush packet.
func readPkt(r *bufio.Reader) ([]byte, error) {
	_, payload, err := readPktRaw(r)
	return payload, err
}

// readPktRaw is readPkt that also returns the length header as sent.
func readPktRaw(r *bufio.Reader) (string, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", nil, err
	}
	p, err := readPktBody(r, hdr)
	return string(hdr[:]), p, err
}

func readPktBody(r *bufio.Reader, hdr [4]byte) ([]byte, error) {
	n, err := strconv.ParseUint(string(hdr[:]), 16, 16)
	if err != nil {
		return nil, fmt.Errorf("bad pkt-line length %q", hdr[:])
	}
	if n == 0 {
		return nil, errFlush
	}
	if n < 4 || n > maxPktLen {
		return nil, fmt.Errorf("bad pkt-line length %d", n)
	}
	buf := make([]byte, n-4)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func pkt(payload string) string { return fmt.Sprintf("%04x%s", len(payload)+4, payload) }

const zeroID = "0000000000000000000000000000000000000000"

// refUpdate is one command of a push: old and new object ids of a ref.
type refUpdate struct {
	Old, New, Ref string
}

func (u refUpdate) deletes() bool { return strings.Trim(u.New, "0") == "" }
func (u refUpdate) creates() bool { return strings.Trim(u.Old, "0") == "" }

// maxCommands bounds the ref updates of one push.
const maxCommands = 1000

// readCommands reads a receive-pack request's commands (up to the flush)
// and returns them, the capabilities the client asked for, and the raw
// bytes read (to hand to git receive-pack).
func readCommands(r *bufio.Reader) ([]refUpdate, map[string]bool, []byte, error) {
	var raw bytes.Buffer
	caps := map[string]bool{}
	var cmds []refUpdate
	for {
		hdr, line, err := readPktRaw(r)
		if err == errFlush {
			raw.WriteString(hdr)
			return cmds, caps, raw.Bytes(), nil
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("reading the push's commands: %w", err)
		}
		raw.WriteString(hdr)
		raw.Write(line)
		if len(cmds) >= maxCommands {
			return nil, nil, nil, fmt.Errorf("more than %d ref updates in one push", maxCommands)
		}
		s := strings.TrimSuffix(string(line), "\n")
		if len(cmds) == 0 {
			var c string
			s, c, _ = strings.Cut(s, "\x00")
			for _, f := range strings.Fields(c) {
				caps[f] = true
			}
		}
		if strings.HasPrefix(s, "shallow ") || strings.HasPrefix(s, "push-cert") {
			return nil, nil, nil, errors.New("shallow pushes and signed pushes are not supported")
		}
		f := strings.Fields(s)
		if len(f) != 3 || len(f[0]) != 40 || len(f[1]) != 40 || !strings.HasPrefix(f[2], "refs/") {
			return nil, nil, nil, fmt.Errorf("malformed push command %q", truncateText(s, 100))
		}
		cmds = append(cmds, refUpdate{Old: f[0], New: f[1], Ref: f[2]})
	}
}

// sidebandWriter writes progress messages (band 2) of a receive-pack
// response, one line per packet.
type sidebandWriter struct {
	w       io.Writer
	enabled bool
}

func (s sidebandWriter) message(line string) {
	if s.enabled {
		io.WriteString(s.w, pkt("\x02"+line+"\n"))
	}
}

// rejection writes a whole receive-pack response that refuses every
// command with reason, after message lines shown as "remote:".
func writeRejection(w io.Writer, cmds []refUpdate, caps map[string]bool, reason string, message []string) {
	sb := caps["side-band-64k"] || caps["side-band"]
	sw := sidebandWriter{w: w, enabled: sb}
	for _, m := range message {
		sw.message(m)
	}
	if !caps["report-status"] && !caps["report-status-v2"] {
		if sb {
			io.WriteString(w, "0000")
		}
		return
	}
	var rs strings.Builder
	rs.WriteString(pkt("unpack ok\n"))
	for _, c := range cmds {
		rs.WriteString(pkt("ng " + c.Ref + " " + reason + "\n"))
	}
	rs.WriteString("0000")
	if !sb {
		io.WriteString(w, rs.String())
		return
	}
	body := rs.String()
	for len(body) > 0 {
		n := min(len(body), 60000)
		io.WriteString(w, pkt("\x01"+body[:n]))
		body = body[n:]
	}
	io.WriteString(w, "0000")
}
