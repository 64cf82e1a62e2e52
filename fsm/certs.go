package fsm

import (
	"time"

	"github.com/hashicorp/go-memdb"
)

// Cert is a TLS certificate and key an app's domains are served with
// (Heroku's SNI endpoint). The router picks it by SNI among Hostnames.
type Cert struct {
	ID        string    `json:"id"`
	AppID     string    `json:"app_id"`
	Name      string    `json:"name"`
	ChainPEM  string    `json:"certificate_chain"`
	KeyPEM    string    `json:"private_key"`
	Hostnames []string  `json:"hostnames"` // from the certificate (may include *.example.com)
	NotAfter  time.Time `json:"not_after"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

const tCerts = "certs"

func certTables() map[string]table {
	return map[string]table{
		tCerts: {decode: decodeAs[Cert], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID:   idx(indexID, true, false, str("ID")),
			indexApp:  byApp(),
			indexName: idx(indexName, true, false, str("Name")),
		}}},
	}
}

// Certificate commands.
const (
	CmdCertPut    = "cert.put"
	CmdCertDelete = "cert.delete"
)

func certHandler(typ string) handler {
	switch typ {
	case CmdCertPut:
		return applyCertPut
	case CmdCertDelete:
		return applyCertDelete
	}
	return nil
}

// CertPut adds or replaces a certificate. The API parses and checks the PEM
// (key matches, not expired) before proposing it.
type CertPut struct {
	Cert Cert `json:"cert"`
}

// MaxCertsPerApp bounds an app's certificates.
const MaxCertsPerApp = 100

func applyCertPut(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[CertPut](c)
	if e != nil {
		return nil, e
	}
	ct := p.Cert
	if e := requireID("certificate", ct.ID); e != nil {
		return nil, e
	}
	if _, e := lookupApp(tx, ct.AppID); e != nil {
		return nil, e
	}
	if ct.ChainPEM == "" || ct.KeyPEM == "" || len(ct.Hostnames) == 0 {
		return nil, invalid("certificate_chain and private_key can't be blank.")
	}
	ct.CreatedAt = c.At
	if old, ok := txFirst[Cert](tx, tCerts, indexID, ct.ID); ok {
		if old.AppID != ct.AppID {
			return nil, notFound("SNI endpoint")
		}
		ct.CreatedAt, ct.Name = old.CreatedAt, old.Name
	} else {
		if other, ok := txFirst[Cert](tx, tCerts, indexName, ct.Name); ok && other.ID != ct.ID {
			return nil, invalid("Name %s is already taken.", ct.Name)
		}
		if len(txAll[Cert](tx, tCerts, indexApp, ct.AppID)) >= MaxCertsPerApp {
			return nil, invalid("An app can have at most %d certificates.", MaxCertsPerApp)
		}
	}
	ct.UpdatedAt = c.At
	if e := insert(tx, tCerts, &ct); e != nil {
		return nil, e
	}
	return &ct, nil
}

// CertDelete removes a certificate.
type CertDelete struct {
	AppID  string `json:"app_id"`
	CertID string `json:"cert_id"`
}

func applyCertDelete(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[CertDelete](c)
	if e != nil {
		return nil, e
	}
	ct, ok := txFirst[Cert](tx, tCerts, indexID, p.CertID)
	if !ok || ct.AppID != p.AppID {
		return nil, notFound("SNI endpoint")
	}
	if err := tx.Delete(tCerts, ct); err != nil {
		return nil, Errorf("internal", "deleting certificate: %v", err)
	}
	return ct, nil
}

// Certs lists an app's certificates.
func (s *Snap) Certs(appID string) []*Cert { return all[Cert](s, tCerts, indexApp, appID) }

// AllCerts lists every certificate (for the router).
func (s *Snap) AllCerts() []*Cert { return all[Cert](s, tCerts, indexID) }

// Cert finds an app's certificate by id or name.
func (s *Snap) Cert(appID, key string) (*Cert, bool) {
	for _, c := range s.Certs(appID) {
		if c.ID == key || c.Name == key {
			return c, true
		}
	}
	return nil, false
}
