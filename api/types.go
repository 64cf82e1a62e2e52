package api

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The JSON representations below follow the Heroku Platform API v3 schema:
// the field names, nesting and null-ability the heroku CLI expects. Fields
// that make no sense on a self-hosted cluster (organization, space, ...) are
// present and null so that clients that read them do not break.

// Ref is a nested reference to another resource.
type Ref struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// UserRef is a nested reference to a user.
type UserRef struct {
	ID    string `json:"id"`
	Email string `json:"email"`
}

// IDRef is a reference by id only.
type IDRef struct {
	ID string `json:"id"`
}

// Account is GET /account.
type Account struct {
	AllowTracking           bool      `json:"allow_tracking"`
	Beta                    bool      `json:"beta"`
	CreatedAt               time.Time `json:"created_at"`
	Email                   string    `json:"email"`
	Federated               bool      `json:"federated"`
	ID                      string    `json:"id"`
	IdentityProvider        *Ref      `json:"identity_provider"`
	LastLogin               *string   `json:"last_login"`
	Name                    *string   `json:"name"`
	SMSNumber               *string   `json:"sms_number"`
	SuspendedAt             *string   `json:"suspended_at"`
	DelinquentAt            *string   `json:"delinquent_at"`
	TwoFactorAuthentication bool      `json:"two_factor_authentication"`
	UpdatedAt               time.Time `json:"updated_at"`
	Verified                bool      `json:"verified"`
	DefaultOrganization     *Ref      `json:"default_organization"`
	DefaultTeam             *Ref      `json:"default_team"`
	Admin                   bool      `json:"admin"`
}

// App is an app resource.
type App struct {
	ACM                          bool       `json:"acm"`
	ArchivedAt                   *time.Time `json:"archived_at"`
	BuildpackProvidedDescription *string    `json:"buildpack_provided_description"`
	BuildStack                   Ref        `json:"build_stack"`
	CreatedAt                    time.Time  `json:"created_at"`
	GitURL                       string     `json:"git_url"`
	ID                           string     `json:"id"`
	InternalRouting              *bool      `json:"internal_routing"`
	Maintenance                  bool       `json:"maintenance"`
	Name                         string     `json:"name"`
	Owner                        UserRef    `json:"owner"`
	Organization                 *Ref       `json:"organization"`
	Team                         *Ref       `json:"team"`
	Space                        *Ref       `json:"space"`
	Region                       Ref        `json:"region"`
	ReleasedAt                   *time.Time `json:"released_at"`
	RepoSize                     *int64     `json:"repo_size"`
	SlugSize                     *int64     `json:"slug_size"`
	Stack                        Ref        `json:"stack"`
	UpdatedAt                    time.Time  `json:"updated_at"`
	WebURL                       string     `json:"web_url"`
	Generation                   string     `json:"generation"`
	CreateStatus                 string     `json:"create_status"`
}

// AppCreateRequest is POST /apps.
type AppCreateRequest struct {
	Name   *string `json:"name"`
	Region *string `json:"region"`
	Stack  *string `json:"stack"`
}

// AppUpdateRequest is PATCH /apps/{app}.
type AppUpdateRequest struct {
	BuildStack  *string `json:"build_stack"`
	Maintenance *bool   `json:"maintenance"`
	Name        *string `json:"name"`
}

// Release is a release resource.
type Release struct {
	AddonPlanNames      []string  `json:"addon_plan_names"`
	Artifacts           []any     `json:"artifacts"`
	App                 Ref       `json:"app"`
	CreatedAt           time.Time `json:"created_at"`
	Description         string    `json:"description"`
	Status              string    `json:"status"`
	ID                  string    `json:"id"`
	Slug                *IDRef    `json:"slug"`
	UpdatedAt           time.Time `json:"updated_at"`
	User                UserRef   `json:"user"`
	Version             int       `json:"version"`
	Current             bool      `json:"current"`
	OutputStreamURL     *string   `json:"output_stream_url"`
	EligibleForRollback bool      `json:"eligible_for_rollback"`
}

// ReleaseCreateRequest is POST /apps/{app}/releases: a rollback when
// Release is set, otherwise a release of Slug.
type ReleaseCreateRequest struct {
	Release     *string `json:"release"`
	Slug        *string `json:"slug"`
	Description *string `json:"description"`
}

// Formation is one process type of an app's formation.
type Formation struct {
	App       Ref       `json:"app"`
	Command   string    `json:"command"`
	CreatedAt time.Time `json:"created_at"`
	ID        string    `json:"id"`
	Quantity  int       `json:"quantity"`
	Size      string    `json:"size"`
	DynoSize  Ref       `json:"dyno_size"`
	Type      string    `json:"type"`
	UpdatedAt time.Time `json:"updated_at"`
}

// FormationUpdate is one entry of PATCH /apps/{app}/formation. Quantity is
// a number or a string: "2", or relative "+1"/"-1" (what `heroku ps:scale
// web+1` sends).
type FormationUpdate struct {
	Type     string    `json:"type"`
	Quantity *Quantity `json:"quantity"`
	Size     *string   `json:"size"`
	DynoSize *struct {
		Name string `json:"name"`
		ID   string `json:"id"`
	} `json:"dyno_size"`
}

// FormationBatchRequest is PATCH /apps/{app}/formation.
type FormationBatchRequest struct {
	Updates []FormationUpdate `json:"updates"`
}

// Domain is a domain resource.
type Domain struct {
	ACMStatus       *string   `json:"acm_status"`
	ACMStatusReason *string   `json:"acm_status_reason"`
	App             Ref       `json:"app"`
	CName           *string   `json:"cname"`
	CreatedAt       time.Time `json:"created_at"`
	Hostname        string    `json:"hostname"`
	ID              string    `json:"id"`
	Kind            string    `json:"kind"`
	UpdatedAt       time.Time `json:"updated_at"`
	Status          string    `json:"status"`
	SNIEndpoint     *Ref      `json:"sni_endpoint"`
}

// DomainCreateRequest is POST /apps/{app}/domains.
type DomainCreateRequest struct {
	Hostname    string  `json:"hostname"`
	SNIEndpoint *string `json:"sni_endpoint"`
}

// AppFeature is a feature flag on an app.
type AppFeature struct {
	CreatedAt     time.Time `json:"created_at"`
	Description   string    `json:"description"`
	DocURL        string    `json:"doc_url"`
	Enabled       bool      `json:"enabled"`
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	State         string    `json:"state"`
	UpdatedAt     time.Time `json:"updated_at"`
	DisplayName   string    `json:"display_name"`
	FeedbackEmail string    `json:"feedback_email"`
}

// Region is a region resource.
type Region struct {
	Country        string    `json:"country"`
	CreatedAt      time.Time `json:"created_at"`
	Description    string    `json:"description"`
	ID             string    `json:"id"`
	Locale         string    `json:"locale"`
	Name           string    `json:"name"`
	PrivateCapable bool      `json:"private_capable"`
	Provider       struct {
		Name   string `json:"name"`
		Region string `json:"region"`
	} `json:"provider"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Stack is a stack resource.
type Stack struct {
	Default   bool      `json:"default"`
	CreatedAt time.Time `json:"created_at"`
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	State     string    `json:"state"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Error is the body of every error response.
type Error struct {
	ID      string `json:"id"`
	Message string `json:"message"`
	URL     string `json:"url,omitempty"`
}

// NodeInfo is an entry of GET /cluster/nodes.
type NodeInfo struct {
	Name        string        `json:"name"`
	Region      string        `json:"region"`
	Zone        string        `json:"zone"`
	Addresses   NodeAddresses `json:"addresses"`
	GossipState string        `json:"gossip_state"`
	RaftRole    string        `json:"raft_role"` // leader, voter, non-voter, none
	Version     string        `json:"version"`
	Draining    bool          `json:"draining"`
	Healthy     *bool         `json:"healthy,omitempty"`
}

// NodeAddresses are a node's advertised endpoints.
type NodeAddresses struct {
	API    string `json:"api,omitempty"`
	Raft   string `json:"raft,omitempty"`
	Gossip string `json:"gossip,omitempty"`
	RPC    string `json:"rpc,omitempty"`
	Router string `json:"router,omitempty"`
}

// DrainRequest is POST /cluster/nodes/{name}/drain.
type DrainRequest struct {
	Draining *bool `json:"draining"`
}

// RaftInfo is GET /cluster/raft.
type RaftInfo struct {
	Node             string     `json:"node"`
	State            string     `json:"state"`
	Leader           string     `json:"leader"`
	LeaderAddress    string     `json:"leader_address"`
	Term             uint64     `json:"term"`
	CommitIndex      uint64     `json:"commit_index"`
	AppliedIndex     uint64     `json:"applied_index"`
	LastIndex        uint64     `json:"last_index"`
	LastContact      string     `json:"last_contact"`
	Healthy          *bool      `json:"healthy,omitempty"`
	FailureTolerance *int       `json:"failure_tolerance,omitempty"`
	Peers            []RaftPeer `json:"peers"`
}

// RaftPeer is one server of the Raft configuration.
type RaftPeer struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Zone    string `json:"zone"`
	Role    string `json:"role"` // leader, voter, non-voter
	Healthy *bool  `json:"healthy,omitempty"`
}

// Quantity is a formation quantity: absolute, or relative to the current one.
type Quantity struct {
	N        int
	Relative bool
}

// UnmarshalJSON accepts 2, "2", "+1" and "-1".
func (q *Quantity) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if strings.HasPrefix(s, `"`) {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		s = strings.TrimSpace(str)
		q.Relative = strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-")
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("quantity %s is not a whole number", b)
	}
	q.N = n
	return nil
}

// MarshalJSON writes absolute quantities as numbers and relative ones as
// signed strings.
func (q Quantity) MarshalJSON() ([]byte, error) {
	if q.Relative {
		return json.Marshal(fmt.Sprintf("%+d", q.N))
	}
	return json.Marshal(q.N)
}
