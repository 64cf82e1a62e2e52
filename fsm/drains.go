package fsm

import (
	"time"

	"github.com/hashicorp/go-memdb"
)

// LogDrain sends an app's log stream to a syslog or HTTPS endpoint.
type LogDrain struct {
	ID        string    `json:"id"`
	AppID     string    `json:"app_id"`
	URL       string    `json:"url"`
	Token     string    `json:"token"` // d.<uuid>
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// MaxDrainsPerApp is Logplex's default per-channel drain limit.
const MaxDrainsPerApp = 6

const tDrains = "drains"

func drainTables() map[string]table {
	return map[string]table{
		tDrains: {decode: decodeAs[LogDrain], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID:  idx(indexID, true, false, str("ID")),
			indexApp: byApp(),
			"token":  idx("token", true, false, str("Token")),
		}}},
	}
}

// Drain commands.
const (
	CmdDrainCreate = "drain.create"
	CmdDrainDelete = "drain.delete"
)

func drainHandler(typ string) handler {
	switch typ {
	case CmdDrainCreate:
		return applyDrainCreate
	case CmdDrainDelete:
		return applyDrainDelete
	}
	return nil
}

// DrainCreate adds a drain. The URL is validated by the API (schemes,
// hosts); the FSM enforces uniqueness and the per-app limit.
type DrainCreate struct {
	Drain LogDrain `json:"drain"`
}

func applyDrainCreate(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[DrainCreate](c)
	if e != nil {
		return nil, e
	}
	d := p.Drain
	if e := requireID("drain", d.ID); e != nil {
		return nil, e
	}
	if _, e := lookupApp(tx, d.AppID); e != nil {
		return nil, e
	}
	if d.URL == "" || d.Token == "" {
		return nil, invalid("url can't be blank.")
	}
	existing := txAll[LogDrain](tx, tDrains, indexApp, d.AppID)
	for _, o := range existing {
		if o.URL == d.URL {
			return nil, invalid("Url has already been taken")
		}
	}
	if len(existing) >= MaxDrainsPerApp {
		return nil, invalid("An app can have at most %d log drains.", MaxDrainsPerApp)
	}
	d.CreatedAt, d.UpdatedAt = c.At, c.At
	if e := insert(tx, tDrains, &d); e != nil {
		return nil, e
	}
	return &d, nil
}

// DrainDelete removes a drain.
type DrainDelete struct {
	AppID   string `json:"app_id"`
	DrainID string `json:"drain_id"`
}

func applyDrainDelete(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[DrainDelete](c)
	if e != nil {
		return nil, e
	}
	d, ok := txFirst[LogDrain](tx, tDrains, indexID, p.DrainID)
	if !ok || d.AppID != p.AppID {
		return nil, notFound("log drain")
	}
	if err := tx.Delete(tDrains, d); err != nil {
		return nil, Errorf("internal", "deleting drain: %v", err)
	}
	return d, nil
}

// Drains lists an app's drains.
func (s *Snap) Drains(appID string) []*LogDrain { return all[LogDrain](s, tDrains, indexApp, appID) }

// AllDrains lists every drain.
func (s *Snap) AllDrains() []*LogDrain { return all[LogDrain](s, tDrains, indexID) }

// Drain finds an app's drain by id, URL or token.
func (s *Snap) Drain(appID, key string) (*LogDrain, bool) {
	for _, d := range s.Drains(appID) {
		if d.ID == key || d.URL == key || d.Token == key {
			return d, true
		}
	}
	return nil, false
}
