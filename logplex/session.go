package logplex

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// MaxSessionLines is the most history lines a session returns (Heroku's).
const MaxSessionLines = DefaultHistoryLines

// SessionRequest is what a log session shows: the newest Lines lines of
// history that Filter selects, then, with Tail, the live lines.
type SessionRequest struct {
	Lines  int
	Tail   bool
	Filter Filter
}

// Validate checks a session request.
func (r SessionRequest) Validate() error {
	if r.Lines < 0 {
		return errors.New("lines must be 0 or more")
	}
	return r.Filter.Validate()
}

// Session is a created log session. Its Token goes into the stream URL:
// it is signed and expires, so the URL needs no other credentials (the
// heroku CLI opens it without an Authorization header) and any node with
// the same session key can serve it.
type Session struct {
	ID        string
	Token     string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// claims is a session token's content.
type claims struct {
	ID     string `json:"i"`
	App    string `json:"a"`
	Lines  int    `json:"n"`
	Tail   bool   `json:"t,omitempty"`
	Source string `json:"s,omitempty"`
	Dyno   string `json:"d,omitempty"`
	Exp    int64  `json:"e"` // unix seconds
}

// Session errors.
var (
	ErrSessionNotFound = errors.New("log session not found")
	ErrSessionExpired  = errors.New("log session expired")
)

// maxTokenLen bounds a token before it is decoded.
const maxTokenLen = 1024

// NewSession creates a log session for an app.
func (p *Pipeline) NewSession(appID string, req SessionRequest) (Session, error) {
	if err := req.Validate(); err != nil {
		return Session{}, err
	}
	now := p.now()
	c := claims{ID: uuid.NewString(), App: appID, Lines: min(req.Lines, MaxSessionLines), Tail: req.Tail,
		Source: req.Filter.Source, Dyno: req.Filter.Dyno, Exp: now.Add(p.opts.SessionTTL).Unix()}
	raw, err := json.Marshal(c)
	if err != nil {
		return Session{}, fmt.Errorf("encoding log session: %w", err)
	}
	payload := base64.RawURLEncoding.EncodeToString(raw)
	tok := payload + "." + base64.RawURLEncoding.EncodeToString(p.sign(payload))
	return Session{ID: c.ID, Token: tok, CreatedAt: now, ExpiresAt: time.Unix(c.Exp, 0)}, nil
}

func (p *Pipeline) sign(payload string) []byte {
	m := hmac.New(sha256.New, p.opts.SessionKey)
	m.Write([]byte("slipway-log-session\x00"))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// openSession checks a token's signature and expiry.
func (p *Pipeline) openSession(tok string) (claims, error) {
	var c claims
	if len(tok) > maxTokenLen {
		return c, ErrSessionNotFound
	}
	payload, sig, ok := strings.Cut(tok, ".")
	if !ok {
		return c, ErrSessionNotFound
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, p.sign(payload)) {
		return c, ErrSessionNotFound
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(raw, &c) != nil || c.App == "" {
		return c, ErrSessionNotFound
	}
	if p.now().Unix() >= c.Exp {
		return c, ErrSessionExpired
	}
	return c, nil
}
