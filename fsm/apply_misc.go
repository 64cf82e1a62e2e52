package fsm

import (
	"github.com/hashicorp/go-memdb"
)

func applyDomainCreate(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[DomainCreate](c)
	if e != nil {
		return nil, e
	}
	d := p.Domain
	if e := requireID("domain", d.ID); e != nil {
		return nil, e
	}
	app, e := lookupApp(tx, d.AppID)
	if e != nil {
		return nil, e
	}
	d.Hostname = NormalizeHostname(d.Hostname)
	if e := ValidHostname(d.Hostname); e != nil {
		return nil, e
	}
	if other, ok := txFirst[Domain](tx, tDomains, indexName, d.Hostname); ok {
		if other.AppID == app.ID {
			return nil, invalid("Domain already added to this app.")
		}
		return nil, invalid("%s is currently in use by another app.", d.Hostname)
	}
	if n := len(txAll[Domain](tx, tDomains, indexApp, app.ID)); n >= MaxDomainsPerApp {
		return nil, invalid("Domain limit reached: an app can have at most %d domains.", MaxDomainsPerApp)
	}
	d.Kind = DomainKindCustom
	if d.Status == "" {
		// "none": no certificate provisioning is pending for this domain
		// (what Heroku reports when ACM is off).
		d.Status = "none"
	}
	d.CreatedAt, d.UpdatedAt = c.At, c.At
	if e := insert(tx, tDomains, &d); e != nil {
		return nil, e
	}
	return &d, nil
}

func applyDomainDelete(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[DomainDelete](c)
	if e != nil {
		return nil, e
	}
	d, ok := txFirst[Domain](tx, tDomains, indexID, p.DomainID)
	if !ok || d.AppID != p.AppID {
		return nil, notFound("domain")
	}
	if d.Kind == DomainKindHeroku {
		return nil, invalid("%s is the app's default domain and can't be removed.", d.Hostname)
	}
	if err := tx.Delete(tDomains, d); err != nil {
		return nil, Errorf("internal", "deleting domain: %v", err)
	}
	return d, nil
}

func applyFeatureSet(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[FeatureSet](c)
	if e != nil {
		return nil, e
	}
	if _, e := lookupApp(tx, p.AppID); e != nil {
		return nil, e
	}
	if _, ok := LookupFeature(p.Name); !ok {
		return nil, notFound("feature")
	}
	af := &AppFeature{AppID: p.AppID, Name: p.Name, Enabled: p.Enabled, UpdatedAt: c.At}
	if e := insert(tx, tFeatures, af); e != nil {
		return nil, e
	}
	return af, nil
}

func applyUserCreate(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[UserCreate](c)
	if e != nil {
		return nil, e
	}
	u := p.User
	if e := requireID("user", u.ID); e != nil {
		return nil, e
	}
	if u.Email == "" {
		return nil, invalid("Email can't be blank.")
	}
	if _, ok := txFirst[User](tx, tUsers, indexName, u.Email); ok {
		return nil, invalid("A user with email %s already exists.", u.Email)
	}
	if _, ok := txFirst[User](tx, tUsers, indexID, u.ID); ok {
		return nil, Errorf(CodeConflict, "A user with id %s already exists.", u.ID)
	}
	u.CreatedAt, u.UpdatedAt = c.At, c.At
	if e := insert(tx, tUsers, &u); e != nil {
		return nil, e
	}
	return &u, nil
}

func applyTokenCreate(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[TokenCreate](c)
	if e != nil {
		return nil, e
	}
	t := p.Token
	if e := requireID("token", t.ID); e != nil {
		return nil, e
	}
	if len(t.Hash) != 64 {
		return nil, invalid("Token hash must be a hex SHA-256.")
	}
	if _, ok := txFirst[User](tx, tUsers, indexID, t.UserID); !ok {
		return nil, notFound("user")
	}
	if _, ok := txFirst[Token](tx, tTokens, indexName, t.Hash); ok {
		return nil, Errorf(CodeConflict, "That token already exists.")
	}
	t.CreatedAt = c.At
	if e := insert(tx, tTokens, &t); e != nil {
		return nil, e
	}
	return &t, nil
}

func applyTokenDelete(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[TokenDelete](c)
	if e != nil {
		return nil, e
	}
	t, ok := txFirst[Token](tx, tTokens, indexID, p.TokenID)
	if !ok {
		return nil, notFound("token")
	}
	if err := tx.Delete(tTokens, t); err != nil {
		return nil, Errorf("internal", "deleting token: %v", err)
	}
	return t, nil
}

func applyNodeUpsert(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[NodeUpsert](c)
	if e != nil {
		return nil, e
	}
	if p.Name == "" {
		return nil, invalid("Node name can't be blank.")
	}
	n := &Node{Name: p.Name, CreatedAt: c.At}
	if old, ok := txFirst[Node](tx, tNodes, indexID, p.Name); ok {
		cp := *old
		n = &cp
	}
	n.Region, n.Zone, n.Version, n.UpdatedAt = p.Region, p.Zone, p.Version, c.At
	if e := insert(tx, tNodes, n); e != nil {
		return nil, e
	}
	return n, nil
}

func applyNodeDrain(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[NodeDrain](c)
	if e != nil {
		return nil, e
	}
	old, ok := txFirst[Node](tx, tNodes, indexID, p.Name)
	if !ok {
		return nil, notFound("node")
	}
	n := *old
	n.Draining, n.UpdatedAt = p.Draining, c.At
	if e := insert(tx, tNodes, &n); e != nil {
		return nil, e
	}
	return &n, nil
}

func applyMetaSet(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[MetaSet](c)
	if e != nil {
		return nil, e
	}
	if p.Key == "" {
		return nil, invalid("Key can't be blank.")
	}
	if p.IfAbsent {
		if _, ok := txFirst[Meta](tx, tMeta, indexID, p.Key); ok {
			return nil, Errorf(CodeConflict, "%s is already set.", p.Key)
		}
	}
	m := &Meta{Key: p.Key, Value: p.Value, UpdatedAt: c.At}
	if e := insert(tx, tMeta, m); e != nil {
		return nil, e
	}
	return m, nil
}

func applyAdminBootstrap(f *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[AdminBootstrap](c)
	if e != nil {
		return nil, e
	}
	for _, u := range txAll[User](tx, tUsers, indexID) {
		if u.Admin {
			return nil, Errorf(CodeConflict, "An admin user (%s) already exists.", u.Email)
		}
	}
	p.User.Admin = true
	uc, _ := NewCommand(CmdUserCreate, c.ID, c.At, c.By, UserCreate{User: p.User})
	if _, e := applyUserCreate(f, tx, &uc); e != nil {
		return nil, e
	}
	p.Token.UserID = p.User.ID
	tc, _ := NewCommand(CmdTokenCreate, c.ID, c.At, c.By, TokenCreate{Token: p.Token})
	if _, e := applyTokenCreate(f, tx, &tc); e != nil {
		return nil, e
	}
	return &p.User, nil
}
