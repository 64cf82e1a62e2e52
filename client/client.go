package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultTimeout bounds a whole request, including reading the response
// body, when the client uses its own *http.Client.
const DefaultTimeout = 30 * time.Second

// AcceptHeader is the media type of the Heroku Platform API v3.
const AcceptHeader = "application/vnd.heroku+json; version=3"

// maxErrorBody is how much of an error response is read to build an *Error.
const maxErrorBody = 64 << 10

// Client talks to one Slipway API endpoint with one token. It is safe for
// concurrent use.
type Client struct {
	baseURL   string
	token     string
	http      *http.Client
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send requests through hc instead of its
// own *http.Client (which has a DefaultTimeout overall timeout). A nil hc is
// ignored.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.http = hc
		}
	}
}

// WithUserAgent sets the User-Agent header sent with every request.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// New returns a client for the API at baseURL (for example
// "http://10.0.0.1:5000"; a trailing slash is ignored) that authenticates
// with token. An empty token sends no Authorization header.
func New(baseURL, token string, opts ...Option) *Client {
	c := &Client{
		baseURL:   strings.TrimRight(baseURL, "/"),
		token:     token,
		http:      &http.Client{Timeout: DefaultTimeout},
		userAgent: "slipway-client",
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// BaseURL returns the API URL the client sends requests to, without a
// trailing slash.
func (c *Client) BaseURL() string { return c.baseURL }

// Error is an error response from the API: a 4xx or 5xx status with, when
// the server sent one, a Heroku-style {"id", "message"} body.
type Error struct {
	// Status is the HTTP status code, e.g. 404.
	Status int
	// ID is the machine-readable error id, e.g. "not_found". It is empty
	// when the body was not an API error document.
	ID string
	// Message is the human-readable message, e.g. "Couldn't find that app.".
	Message string
	// URL is the documentation URL the server attached, if any.
	URL string
}

// Error returns the message first, then the id (or the status when there is
// no id): "Couldn't find that app. (not_found)".
func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if msg == "" {
		msg = "request failed"
	}
	if e.ID != "" {
		return fmt.Sprintf("%s (%s)", msg, e.ID)
	}
	return fmt.Sprintf("%s (HTTP %d)", msg, e.Status)
}

// StatusCode returns the HTTP status of an *Error in err's chain, or 0 when
// err is not an API error response.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// IsNotFound reports whether err is an API error response with status 404.
func IsNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }

// Path joins segments into an absolute request path, escaping each one with
// url.PathEscape so that names containing '/', '?', '%' or spaces stay one
// segment. The segments "." and ".." are escaped too, so that they cannot
// change the path. Path("apps", "a b", "config-vars") is
// "/apps/a%20b/config-vars".
func Path(segments ...string) string {
	var b strings.Builder
	for _, s := range segments {
		b.WriteByte('/')
		switch s {
		case ".":
			b.WriteString("%2E")
		case "..":
			b.WriteString("%2E%2E")
		default:
			b.WriteString(url.PathEscape(s))
		}
	}
	return b.String()
}

// Do sends a request to path (which must start with "/" and be escaped
// already; see Path) relative to the client's base URL.
//
// body is sent as is when it is an io.Reader or a []byte (including
// json.RawMessage), and JSON-encoded otherwise; nil sends no body. hdr adds
// headers to, or overrides, the standard ones (Accept, Authorization,
// Content-Type, User-Agent).
//
// A 2xx response body is JSON-decoded into out unless out is nil or the body
// is empty; decode into a *json.RawMessage to keep the raw JSON. A response
// with any other status is returned as an *Error. The returned response's
// body has already been read and closed; its status and headers remain
// available, also alongside an *Error.
func (c *Client) Do(ctx context.Context, method, path string, body, out any, hdr http.Header) (*http.Response, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("client: path %q does not start with /", path)
	}
	target := c.baseURL + path

	var rdr io.Reader
	switch b := body.(type) {
	case nil:
	case io.Reader:
		rdr = b
	case []byte:
		rdr = bytes.NewReader(b)
	default:
		data, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s request body: %w", method, target, err)
		}
		rdr = bytes.NewReader(data)
	}

	req, err := http.NewRequestWithContext(ctx, method, target, rdr)
	if err != nil {
		return nil, fmt.Errorf("build %s %s request: %w", method, target, err)
	}
	req.Header.Set("Accept", AcceptHeader)
	req.Header.Set("Content-Type", "application/json")
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, vs := range hdr {
		req.Header.Del(k)
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}

	resp, err := c.http.Do(req)
	if err != nil {
		// *url.Error repeats the method and URL; keep its cause and say
		// it once.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s %s: %w", method, target, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		_ = resp.Body.Close()
	}()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp, decodeError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return resp, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return resp, fmt.Errorf("decode response of %s %s: %w", method, target, err)
	}
	return resp, nil
}

// decodeError builds an *Error from a non-2xx response.
func decodeError(resp *http.Response) *Error {
	e := &Error{Status: resp.StatusCode}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body struct {
		ID      string `json:"id"`
		Message string `json:"message"`
		URL     string `json:"url"`
	}
	if json.Unmarshal(data, &body) == nil && (body.ID != "" || body.Message != "") {
		e.ID, e.Message, e.URL = body.ID, body.Message, body.URL
		return e
	}
	// Not an API error document (a proxy's HTML page, say): keep the
	// first line of it, short, as the message.
	text := strings.TrimSpace(string(data))
	if i := strings.IndexByte(text, '\n'); i >= 0 {
		text = strings.TrimSpace(text[:i])
	}
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	e.Message = text
	return e
}

// get is Do for a GET without extra headers.
func (c *Client) get(ctx context.Context, path string, out any) error {
	_, err := c.Do(ctx, http.MethodGet, path, nil, out, nil)
	return err
}

// send is Do for a request with a body and without extra headers.
func (c *Client) send(ctx context.Context, method, path string, body, out any) error {
	_, err := c.Do(ctx, method, path, body, out, nil)
	return err
}

// need returns an error when an identifier argument is empty, which would
// otherwise address a different resource (GET /apps/ instead of one app).
func need(what, v string) error {
	if v == "" {
		return fmt.Errorf("client: %s is required", what)
	}
	return nil
}
