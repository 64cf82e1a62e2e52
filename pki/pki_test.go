package pki

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

func TestIssuedCertificateVerifiesAgainstTheCA(t *testing.T) {
	now := time.Now()
	ca, err := NewCA("test cluster", now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("node-1", []string{"127.0.0.1", "node-1.local"}, now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	pool, _ := ca.Pool()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("client does not trust the issued certificate: %v", err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "hi" {
		t.Fatalf("read %q", b)
	}
	// Another CA's client refuses it.
	other, _ := NewCA("other", now)
	op, _ := other.Pool()
	ln2, _ := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	defer ln2.Close()
	go func() {
		if c, err := ln2.Accept(); err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	if c, err := tls.Dial("tcp", ln2.Addr().String(), &tls.Config{RootCAs: op}); err == nil {
		c.Close()
		t.Fatalf("a client trusting another CA accepted the certificate")
	}
	if _, _, err := net.SplitHostPort(ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
}

func TestBadCAIsRejected(t *testing.T) {
	if _, err := (&CA{CertPEM: "nope", KeyPEM: "nope"}).Issue("x", nil, time.Now(), time.Hour); err == nil {
		t.Fatal("issued with a broken CA")
	}
}
