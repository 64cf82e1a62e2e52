package dyno

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/logplex"
)

// maxLine is where long output lines are split, as Heroku's logplex does.
const maxLine = 10000

// pipeSize is the capacity asked for the output pipe: what a dyno can write
// while no agent reads it (an agent restart) before it blocks.
const pipeSize = 1 << 20

// makeOutputPipe creates the named pipe a dyno writes its output to and
// returns its write side, opened read-write so that a dyno never gets SIGPIPE
// while no agent reads (the dyno holds a reader itself), and its read side.
func makeOutputPipe(path string) (w, r *os.File, err error) {
	if err := syscall.Mkfifo(path, 0o600); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, nil, fmt.Errorf("output pipe: %w", err)
	}
	w, err = os.OpenFile(path, os.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("output pipe: %w", err)
	}
	_, _ = unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, pipeSize) // best effort
	r, err = openOutputPipe(path)
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	return w, r, nil
}

// openOutputPipe opens the read side of a dyno's output pipe. Reads return
// io.EOF once every process holding the write side has exited.
func openOutputPipe(path string) (*os.File, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	return os.NewFile(uintptr(fd), path), nil // non-blocking: reads use the runtime poller
}

// pumpLines sends each line read from r to emit, splitting lines longer
// than maxLine, until r ends.
func pumpLines(r io.Reader, emit func(string)) {
	br := bufio.NewReaderSize(r, 64*1024)
	var line []byte
	split := false
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		for len(line) > maxLine {
			emit(string(line[:maxLine]))
			line = append(line[:0], line[maxLine:]...)
			split = true
		}
		end := err != nil && !errors.Is(err, bufio.ErrBufferFull)
		if err == nil || (end && len(line) > 0) {
			if l := bytes.TrimRight(line, "\r\n"); len(l) > 0 || !split {
				emit(string(l))
			}
			line, split = line[:0], false
		}
		if end {
			return
		}
	}
}

// lineSink emits log lines for one dyno.
type lineSink struct {
	sink           logplex.Sink
	appID, appName string
	proc           string
	now            func() time.Time
}

func (l lineSink) emit(source, text string) {
	l.sink.Emit(logplex.Line{AppID: l.appID, AppName: l.appName, Time: l.now(), Source: source, Proc: l.proc, Text: text})
}

// heroku emits a platform event (heroku[web.1]).
func (l lineSink) heroku(format string, args ...any) {
	l.emit(logplex.SourceHeroku, fmt.Sprintf(format, args...))
}

// app emits a line of the dyno's output (app[web.1]).
func (l lineSink) app(text string) { l.emit(logplex.SourceApp, text) }
