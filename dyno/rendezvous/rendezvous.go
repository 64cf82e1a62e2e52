// Package rendezvous serves attached one-off dynos the way Heroku's
// rendezvous does, so the unmodified `heroku run` works: the client opens a
// TLS connection to the attach URL's host and port, sends the URL's secret
// followed by CRLF, discards the first line it receives, and from then on
// the connection carries the dyno's terminal (stdin one way, stdout and
// stderr the other) until either side closes it.
package rendezvous

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/fsm"
)

// AttachFunc connects to a placed one-off dyno's terminal, wherever it runs.
type AttachFunc func(ctx context.Context, d *fsm.Dyno) (io.ReadWriteCloser, error)

// Server accepts rendezvous connections.
type Server struct {
	TLS    *tls.Config
	Snap   func() *fsm.Snap
	Attach AttachFunc
	Logger *slog.Logger
	// PlaceTimeout bounds the wait for the dyno to be placed on a node.
	PlaceTimeout time.Duration
	// FirstLineGap separates the status line from the dyno's output, since
	// the heroku CLI discards the whole first chunk it reads.
	FirstLineGap time.Duration

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Serve accepts connections on ln until it is closed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.PlaceTimeout == 0 {
		s.PlaceTimeout = 60 * time.Second
	}
	if s.FirstLineGap == 0 {
		s.FirstLineGap = 200 * time.Millisecond
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	s.mu.Lock()
	s.conns = map[net.Conn]struct{}{}
	s.mu.Unlock()
	go func() {
		<-ctx.Done()
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("rendezvous accept: %w", err)
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go func() {
			defer func() {
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			if err := s.handle(ctx, tls.Server(c, s.TLS)); err != nil {
				s.Logger.Info("rendezvous session ended", "remote", c.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

// SecretHash is how an attach secret is stored in the dyno record.
func SecretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func (s *Server) handle(ctx context.Context, c *tls.Conn) error {
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if err := c.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	br := bufio.NewReaderSize(c, 512)
	line, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the secret: %w", err)
	}
	secret := strings.TrimSpace(line)
	_ = c.SetDeadline(time.Time{})
	d, err := s.await(ctx, secret)
	if err != nil {
		_, _ = fmt.Fprintf(c, "%s\r\n", err)
		return err
	}
	// The client throws the first chunk away: send the status line alone.
	if _, err := io.WriteString(c, "rendezvous\r\n"); err != nil {
		return err
	}
	time.Sleep(s.FirstLineGap)
	stream, err := s.Attach(ctx, d)
	if err != nil {
		_, _ = fmt.Fprintf(c, "Error connecting to %s: %v\r\n", d.Name, err)
		return err
	}
	defer stream.Close()
	// The session lasts as long as the dyno's output: the client's input
	// may end first (stdin at EOF) without ending the session.
	outDone := make(chan struct{})
	go func() {
		// Client → dyno. Anything the reader buffered past the secret
		// line belongs to the dyno. End of input is passed on; a client
		// that vanished hangs the dyno up.
		if _, err := io.Copy(stream, br); err != nil {
			stream.Close()
		} else if cw, ok := stream.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	go func() {
		defer close(outDone)
		_, _ = io.Copy(c, stream)
		_ = c.CloseWrite()
	}()
	select {
	case <-outDone: // the dyno exited, or the client left (writes failed)
	case <-ctx.Done():
	}
	return nil
}

// await finds the attached one-off dyno a secret belongs to and waits
// until it is placed on a node.
func (s *Server) await(ctx context.Context, secret string) (*fsm.Dyno, error) {
	if secret == "" {
		return nil, errors.New("no secret")
	}
	h := SecretHash(secret)
	deadline := time.Now().Add(s.PlaceTimeout)
	for {
		snap := s.Snap()
		ws := snap.Watch("dynos")
		var found *fsm.Dyno
		for _, d := range snap.AllDynos() {
			if d.Attach && d.AttachSecret == h {
				found = d
				break
			}
		}
		if found == nil {
			return nil, errors.New("no dyno waits for this secret (it may have ended)")
		}
		if found.Stop || found.State == fsm.DynoDown || found.State == fsm.DynoCrashed {
			return nil, fmt.Errorf("%s has already ended", found.Name)
		}
		if found.Node != "" && found.Instance != "" {
			return found, nil
		}
		if time.Now().After(deadline) {
			reason := found.PendingReason
			if reason == "" {
				reason = "no node took it in time"
			}
			return nil, fmt.Errorf("%s could not start: %s", found.Name, reason)
		}
		wctx, cancel := context.WithDeadline(ctx, deadline)
		_ = ws.WatchCtx(wctx)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}
