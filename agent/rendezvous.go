package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/dyno/rendezvous"
	"github.com/slipwayhq/slipway/fsm"
)

// startRendezvous serves `heroku run` attach connections on the rendezvous
// port, with a certificate issued from the cluster CA (clients trust the CA
// through NODE_EXTRA_CA_CERTS / SLIPWAY_CA_FILE).
func (a *Agent) startRendezvous(network interface {
	Listen(string) (net.Listener, error)
}) error {
	addr := net.JoinHostPort(a.cfg.BindAddr, strconv.Itoa(a.cfg.Ports.Rendezvous))
	var ln net.Listener
	var err error
	if network != nil {
		ln, err = network.Listen(addr)
	} else {
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var cert *tls.Certificate
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		if cert != nil && time.Until(cert.Leaf.NotAfter) > 24*time.Hour {
			return cert, nil
		}
		ca, ok := a.clusterCA()
		if !ok {
			return nil, errors.New("the cluster CA does not exist yet")
		}
		c, err := ca.Issue(a.cfg.NodeName, []string{a.cfg.AdvertiseAddr, a.cfg.BindAddr, a.cfg.NodeName, "localhost", "127.0.0.1"},
			time.Now(), 30*24*time.Hour)
		if err != nil {
			return nil, err
		}
		cert = &c
		return cert, nil
	}
	srv := &rendezvous.Server{
		TLS:  &tls.Config{GetCertificate: getCert, MinVersion: tls.VersionTLS12},
		Snap: a.fsm.Snap,
		Attach: func(ctx context.Context, d *fsm.Dyno) (io.ReadWriteCloser, error) {
			return a.AttachDyno(ctx, d.ID)
		},
		Logger: a.log.With("component", "rendezvous"),
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := srv.Serve(a.ctx, ln); err != nil {
			a.log.Error("rendezvous server stopped", "err", err)
		}
	}()
	return nil
}
