package fsm

import (
	"encoding/json"
	"fmt"
	"time"
)

// Command types. A type is never repurposed; a new shape gets a new version
// (V) or a new type. Nodes advertise the highest command version they apply
// (CommandVersion) in gossip so that a new command is only proposed once
// every node in the region can apply it.
const (
	CmdAppCreate       = "app.create"
	CmdAppUpdate       = "app.update"
	CmdAppDelete       = "app.delete"
	CmdConfigUpdate    = "config.update"
	CmdSlugCreate      = "slug.create"
	CmdSlugUploaded    = "slug.uploaded"
	CmdReleaseCreate   = "release.create"
	CmdReleaseRollback = "release.rollback"
	CmdFormationUpdate = "formation.update"
	CmdDomainCreate    = "domain.create"
	CmdDomainDelete    = "domain.delete"
	CmdFeatureSet      = "feature.set"
	CmdUserCreate      = "user.create"
	CmdTokenCreate     = "token.create"
	CmdTokenDelete     = "token.delete"
	CmdNodeUpsert      = "node.upsert"
	CmdNodeDrain       = "node.drain"
	CmdMetaSet         = "meta.set"
	CmdAdminBootstrap  = "admin.bootstrap"
)

// CommandVersion is the newest command encoding this binary applies.
const CommandVersion = 1

// MaxCommandSize bounds an encoded command; larger ones are rejected before
// they reach the log.
const MaxCommandSize = 1 << 20

// Command is one replicated write.
type Command struct {
	Type string          `json:"type"`
	V    int             `json:"v"`
	ID   string          `json:"id"`           // idempotency key, a UUID chosen by the proposer
	At   time.Time       `json:"at"`           // the proposer's clock; Apply uses it instead of reading one
	By   string          `json:"by,omitempty"` // acting user id
	Data json.RawMessage `json:"data"`
}

// NewCommand builds a command with its payload encoded.
func NewCommand(typ, id string, at time.Time, by string, data any) (Command, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return Command{}, fmt.Errorf("fsm: encoding %s: %w", typ, err)
	}
	return Command{Type: typ, V: CommandVersion, ID: id, At: at.UTC(), By: by, Data: b}, nil
}

// Encode returns the log entry for c.
func (c Command) Encode() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("fsm: encoding command: %w", err)
	}
	if len(b) > MaxCommandSize {
		return nil, Errorf(CodeInvalidParams, "Request too large (%d bytes, limit %d).", len(b), MaxCommandSize)
	}
	return b, nil
}

// DecodeCommand parses a log entry. It rejects entries that are not a
// command this binary can apply.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if len(b) > MaxCommandSize {
		return c, Errorf(CodeBadRequest, "command too large")
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, Errorf(CodeBadRequest, "malformed command: %v", err)
	}
	if c.Type == "" {
		return c, Errorf(CodeBadRequest, "command has no type")
	}
	if c.V < 1 || c.V > CommandVersion {
		return c, Errorf(CodeBadRequest, "command %s version %d is not supported (this node applies up to %d)", c.Type, c.V, CommandVersion)
	}
	if c.ID == "" {
		return c, Errorf(CodeBadRequest, "command has no id")
	}
	if len(c.Data) == 0 || string(c.Data) == "null" {
		c.Data = json.RawMessage("{}")
	}
	return c, nil
}

// Result is what applying a command returns: the affected record or an error.
type Result struct {
	Index uint64          `json:"index,omitempty"`
	Value json.RawMessage `json:"value,omitempty"`
	Err   *Error          `json:"error,omitempty"`
}

// Decode unmarshals the result value into v, or returns the result's error.
func (r *Result) Decode(v any) error {
	if r.Err != nil {
		return r.Err
	}
	if v == nil || len(r.Value) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Value, v); err != nil {
		return fmt.Errorf("fsm: decoding result: %w", err)
	}
	return nil
}

// Payloads.

// AppCreate creates an app with its v1 release, empty config and default domain.
type AppCreate struct {
	App             App    `json:"app"`
	ReleaseID       string `json:"release_id"`
	DefaultDomainID string `json:"default_domain_id"`
	DefaultHostname string `json:"default_hostname"`
}

// AppUpdate changes an app's mutable fields; nil fields are left alone.
type AppUpdate struct {
	AppID       string  `json:"app_id"`
	Name        *string `json:"name,omitempty"`
	Maintenance *bool   `json:"maintenance,omitempty"`
	BuildStack  *string `json:"build_stack,omitempty"`
	// DefaultHostname is the app's new default domain when Name changes.
	DefaultHostname string `json:"default_hostname,omitempty"`
}

// AppDelete removes an app and everything that belongs to it.
type AppDelete struct {
	AppID string `json:"app_id"`
}

// ConfigUpdate sets (non-nil) and removes (nil) config vars and records a release.
type ConfigUpdate struct {
	AppID     string             `json:"app_id"`
	Changes   map[string]*string `json:"changes"`
	ReleaseID string             `json:"release_id"`
	// ReleaseDynoID names the release-phase dyno, if the release has one.
	ReleaseDynoID string `json:"release_dyno_id,omitempty"`
}

// SlugCreate records a slug's metadata.
type SlugCreate struct {
	Slug Slug `json:"slug"`
}

// ReleaseCreate releases a slug with the app's current config.
type ReleaseCreate struct {
	AppID       string `json:"app_id"`
	ReleaseID   string `json:"release_id"`
	SlugID      string `json:"slug_id"`
	Description string `json:"description,omitempty"`
	// ReleaseDynoID names the release-phase dyno, if the slug has a
	// release process type.
	ReleaseDynoID string `json:"release_dyno_id,omitempty"`
}

// ReleaseRollback makes a new release copying an earlier one's slug and config.
type ReleaseRollback struct {
	AppID     string `json:"app_id"`
	TargetID  string `json:"target_id"`
	ReleaseID string `json:"release_id"`
	// ReleaseDynoID names the release-phase dyno, if the release has one.
	ReleaseDynoID string `json:"release_dyno_id,omitempty"`
}

// FormationChange is one entry of a batch formation update.
type FormationChange struct {
	Type     string  `json:"type"`
	Quantity *int    `json:"quantity,omitempty"`
	Delta    *int    `json:"delta,omitempty"` // relative change ("web+1"), applied to the current quantity
	Size     *string `json:"size,omitempty"`
}

// FormationUpdate changes one or more process types of an app atomically.
type FormationUpdate struct {
	AppID   string            `json:"app_id"`
	Updates []FormationChange `json:"updates"`
}

// DomainCreate adds a custom domain.
type DomainCreate struct {
	Domain Domain `json:"domain"`
}

// DomainDelete removes a domain.
type DomainDelete struct {
	AppID    string `json:"app_id"`
	DomainID string `json:"domain_id"`
}

// FeatureSet enables or disables an app feature.
type FeatureSet struct {
	AppID   string `json:"app_id"`
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
}

// UserCreate adds a user.
type UserCreate struct {
	User User `json:"user"`
}

// TokenCreate stores a token hash.
type TokenCreate struct {
	Token Token `json:"token"`
}

// TokenDelete revokes a token.
type TokenDelete struct {
	TokenID string `json:"token_id"`
}

// NodeUpsert records a node's identity.
type NodeUpsert struct {
	Name    string `json:"name"`
	Region  string `json:"region"`
	Zone    string `json:"zone"`
	Version string `json:"version"`
}

// NodeDrain marks a node draining (no new dynos) or not.
type NodeDrain struct {
	Name     string `json:"name"`
	Draining bool   `json:"draining"`
}

// MetaSet sets a cluster-wide value. With IfAbsent it only sets a key that
// does not exist yet (and fails with conflict otherwise).
type MetaSet struct {
	Key      string          `json:"key"`
	Value    json.RawMessage `json:"value"`
	IfAbsent bool            `json:"if_absent,omitempty"`
}

// AdminBootstrap creates the first admin user and its token, atomically; it
// fails with conflict once any admin exists.
type AdminBootstrap struct {
	User  User  `json:"user"`
	Token Token `json:"token"`
}

// SlugUploaded records that a slug's tarball is stored (replicated) in the
// blob store.
type SlugUploaded struct {
	SlugID string `json:"slug_id"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}
