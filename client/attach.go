package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
)

// Attach connects to an attached one-off dyno's terminal through its
// attach URL (rendezvous://host:port/secret), verifying the node's TLS
// certificate against roots (the cluster CA). It copies in to the dyno and
// the dyno's output to out until the dyno's output ends.
func Attach(ctx context.Context, attachURL string, roots *x509.CertPool, in io.Reader, out io.Writer) error {
	u, err := url.Parse(attachURL)
	if err != nil || u.Scheme != "rendezvous" || u.Host == "" {
		return fmt.Errorf("attach URL %q is not rendezvous://host:port/secret", attachURL)
	}
	host, _, err := net.SplitHostPort(u.Host)
	if err != nil {
		return fmt.Errorf("attach URL %q: %w", attachURL, err)
	}
	var d tls.Dialer
	d.Config = &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return fmt.Errorf("connecting to the dyno at %s: %w", u.Host, err)
	}
	defer conn.Close()
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	if _, err := io.WriteString(conn, strings.TrimPrefix(u.Path, "/")+"\r\n"); err != nil {
		return fmt.Errorf("sending the attach secret: %w", err)
	}
	br := bufio.NewReader(conn)
	first, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("attaching: %w", err)
	}
	if strings.TrimSpace(first) != "rendezvous" {
		return fmt.Errorf("attaching: %s", strings.TrimSpace(first))
	}
	if in != nil {
		go func() {
			_, _ = io.Copy(conn, in)
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
		}()
	}
	if _, err := io.Copy(out, br); err != nil && ctx.Err() == nil {
		return fmt.Errorf("reading the dyno's output: %w", err)
	}
	return ctx.Err()
}
