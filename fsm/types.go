package fsm

import (
	"encoding/json"
	"time"
)

// App is a Heroku app. Its home region's Raft is the single writer for it;
// Epoch grows on every region failover so stale writers can be fenced.
type App struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Region      string     `json:"region"`
	Epoch       uint64     `json:"epoch"`
	Stack       string     `json:"stack"`
	BuildStack  string     `json:"build_stack"`
	Maintenance bool       `json:"maintenance"`
	OwnerID     string     `json:"owner_id"`
	Buildpacks  []string   `json:"buildpacks,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	ReleasedAt  *time.Time `json:"released_at,omitempty"`
}

// ConfigVars is an app's current config. Each change also makes a release
// holding a copy of the whole map.
type ConfigVars struct {
	AppID     string            `json:"app_id"`
	Vars      map[string]string `json:"vars"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// Release statuses, as Heroku's.
const (
	ReleasePending   = "pending"
	ReleaseSucceeded = "succeeded"
	ReleaseFailed    = "failed"
)

// Release is one numbered version of an app: a slug (possibly none) plus a
// config snapshot.
type Release struct {
	ID          string            `json:"id"`
	AppID       string            `json:"app_id"`
	Version     int               `json:"version"`
	Description string            `json:"description"`
	SlugID      string            `json:"slug_id,omitempty"`
	Config      map[string]string `json:"config"`
	UserID      string            `json:"user_id"`
	Status      string            `json:"status"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

// Slug is a compiled app: a tarball in the blob store plus the process types
// it declares.
type Slug struct {
	ID                string            `json:"id"`
	AppID             string            `json:"app_id"`
	ProcessTypes      map[string]string `json:"process_types"`
	Commit            string            `json:"commit,omitempty"`
	CommitDescription string            `json:"commit_description,omitempty"`
	Checksum          string            `json:"checksum,omitempty"`
	Stack             string            `json:"stack"`
	BuildpackProvided string            `json:"buildpack_provided_description,omitempty"`
	Size              int64             `json:"size"`
	BlobDigest        string            `json:"blob_digest,omitempty"`
	CreatedAt         time.Time         `json:"created_at"`
	UpdatedAt         time.Time         `json:"updated_at"`
}

// Formation is the desired number and size of dynos of one process type.
type Formation struct {
	ID        string    `json:"id"`
	AppID     string    `json:"app_id"`
	Type      string    `json:"type"`
	Quantity  int       `json:"quantity"`
	Size      string    `json:"size"`
	Command   string    `json:"command"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Domain kinds.
const (
	DomainKindHeroku = "heroku"
	DomainKindCustom = "custom"
)

// Domain is a hostname routed to an app.
type Domain struct {
	ID        string    `json:"id"`
	AppID     string    `json:"app_id"`
	Hostname  string    `json:"hostname"`
	Kind      string    `json:"kind"`
	CName     string    `json:"cname,omitempty"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// AppFeature records a feature flag's state on an app. Only flags that were
// ever set are stored; the rest take the catalog default.
type AppFeature struct {
	AppID     string    `json:"app_id"`
	Name      string    `json:"name"`
	Enabled   bool      `json:"enabled"`
	UpdatedAt time.Time `json:"updated_at"`
}

// User is an account that can hold API tokens.
type User struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name,omitempty"`
	Admin     bool      `json:"admin"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Token is an API token; only its SHA-256 hash is stored.
type Token struct {
	ID          string     `json:"id"`
	UserID      string     `json:"user_id"`
	Hash        string     `json:"hash"`
	Description string     `json:"description,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
}

// Node is the replicated record of a cluster node. Liveness is not here
// (memberlist knows it); this holds what operators set (draining) and what
// the node last reported about itself.
type Node struct {
	Name      string    `json:"name"`
	Region    string    `json:"region"`
	Zone      string    `json:"zone"`
	Version   string    `json:"version"`
	Draining  bool      `json:"draining"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// request remembers the result of an applied command, keyed by the command
// id, so a retried command returns the same result.
type request struct {
	ID     string          `json:"id"`
	AtUnix int64           `json:"at_unix"`
	Result json.RawMessage `json:"result"`
}

// Meta is a cluster-wide key/value record (cluster id, flags, ...).
type Meta struct {
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	UpdatedAt time.Time       `json:"updated_at"`
}
