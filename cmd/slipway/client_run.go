package main

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"sync"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

// exitMarker is appended to a one-off command so its exit status travels
// back over the terminal stream (what `heroku run --exit-code` does).
const exitMarker = "\uFFFF heroku-command-exit-status: "

var exitMarkerRE = regexp.MustCompile("\uFFFF heroku-command-exit-status: (\\d+)\r?\n?")

// exitCodeError makes the CLI exit with a one-off dyno's status.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return fmt.Sprintf("process exited with status %d", e.code) }

func (e *clientEnv) runCommand() *cobra.Command {
	var size string
	var ttl int
	var envPairs []string
	cmd := &cobra.Command{
		Use:   "run COMMAND...",
		Short: "Run a one-off dyno attached to this terminal",
		Long: `Start a one-off dyno running COMMAND with the app's current release and
config, and connect this terminal to it (POST /apps/{app}/dynos with attach,
then the rendezvous endpoint of a node, over TLS verified against the cluster
CA: $SLIPWAY_CA_FILE, else fetched from GET /cluster/ca). The command's exit
status becomes slipway's.`,
		Example: `  slipway run -a demo -- echo hello
  slipway run -a demo -e 'DEBUG=1' -- ./bin/console`,
		Args: cobra.MinimumNArgs(1),
	}
	cmd.Flags().StringVarP(&size, "size", "s", "", "dyno size (default Basic)")
	cmd.Flags().IntVar(&ttl, "time-to-live", 0, "stop the dyno after this many seconds (at most 86400)")
	cmd.Flags().StringArrayVarP(&envPairs, "env", "e", nil, "extra environment, 'KEY=VALUE;KEY2=VALUE2' (repeatable)")
	app := e.appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		req, err := runRequest(args, size, ttl, envPairs, true)
		if err != nil {
			return err
		}
		shown := req.Command
		req.Command += `; echo "` + exitMarker + `$?"`
		roots, err := e.clusterCA(cmd, c)
		if err != nil {
			return err
		}
		var d *api.Dyno
		err = action(cmd.ErrOrStderr(), fmt.Sprintf("Running `%s` on %s", shown, appLabel(name)), func() (string, error) {
			var err error
			if d, err = c.RunDyno(cmd.Context(), name, req); err != nil {
				return "", err
			}
			if d.AttachURL == nil {
				return "", fmt.Errorf("the API returned no attach URL")
			}
			return fmt.Sprintf("up, %s (%s)", d.Name, d.Size), nil
		})
		if err != nil {
			return err
		}
		out := &exitScanner{w: cmd.OutOrStdout()}
		if err := client.Attach(cmd.Context(), *d.AttachURL, roots, cmd.InOrStdin(), out); err != nil {
			return err
		}
		out.flush()
		if out.code < 0 {
			return fmt.Errorf("the connection to %s ended without an exit status", d.Name)
		}
		if out.code != 0 {
			return exitCodeError{out.code}
		}
		return nil
	}
	return cmd
}

// clusterCA loads the CA the nodes' TLS certificates are issued by.
func (e *clientEnv) clusterCA(cmd *cobra.Command, c *client.Client) (*x509.CertPool, error) {
	var pem []byte
	if f := e.getenv("SLIPWAY_CA_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading SLIPWAY_CA_FILE: %w", err)
		}
		pem = b
	} else {
		resp, err := c.Do(cmd.Context(), http.MethodGet, "/cluster/ca", nil, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("fetching the cluster CA: %w", err)
		}
		defer resp.Body.Close()
		if pem, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20)); err != nil {
			return nil, fmt.Errorf("fetching the cluster CA: %w", err)
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("the cluster CA is not a PEM certificate")
	}
	return pool, nil
}

// exitScanner passes output through, removing the exit-status marker line
// and remembering the status.
type exitScanner struct {
	mu   sync.Mutex
	w    io.Writer
	buf  []byte
	code int
	seen bool
}

func (s *exitScanner) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.seen {
		s.code = -1
		s.seen = true
	}
	s.buf = append(s.buf, p...)
	if m := exitMarkerRE.FindSubmatchIndex(s.buf); m != nil && (m[1] < len(s.buf) || bytes.HasSuffix(s.buf[:m[1]], []byte("\n"))) {
		s.code, _ = strconv.Atoi(string(s.buf[m[2]:m[3]]))
		s.buf = append(append([]byte{}, s.buf[:m[0]]...), s.buf[m[1]:]...)
	}
	// Hold back the longest tail that may still grow into the marker.
	hold := len(s.buf)
	for i := max(0, len(s.buf)-len(exitMarker)-12); i < len(s.buf); i++ {
		tail := s.buf[i:]
		if bytes.HasPrefix([]byte(exitMarker), tail) || (bytes.HasPrefix(tail, []byte(exitMarker)) && digitsOnly(tail[len(exitMarker):])) {
			hold = i
			break
		}
	}
	if _, err := s.w.Write(s.buf[:hold]); err != nil {
		return 0, err
	}
	s.buf = append([]byte{}, s.buf[hold:]...)
	return len(p), nil
}

func digitsOnly(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && c != '\r' {
			return false
		}
	}
	return true
}

func (s *exitScanner) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.seen {
		s.code = -1
	}
	if m := exitMarkerRE.FindSubmatchIndex(s.buf); m != nil {
		s.code, _ = strconv.Atoi(string(s.buf[m[2]:m[3]]))
		s.buf = append(append([]byte{}, s.buf[:m[0]]...), s.buf[m[1]:]...)
	}
	if len(s.buf) > 0 {
		_, _ = s.w.Write(s.buf)
		s.buf = nil
	}
}
