package client

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/slipwayhq/slipway/api"
)

// CreateLogSession creates a log session (POST /apps/{app}/log-sessions);
// read its lines with StreamLogs.
func (c *Client) CreateLogSession(ctx context.Context, app string, req api.LogSessionCreateRequest) (*api.LogSession, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	var s api.LogSession
	if err := c.send(ctx, http.MethodPost, Path("apps", app, "log-sessions"), req, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// StreamLogs reads a log session's logplex_url (Server-Sent Events, no
// credentials needed) and calls line for each log line, until the server
// ends the stream (a session without tail) or ctx is done. The overall
// timeout of the client's HTTP client does not apply.
func (c *Client) StreamLogs(ctx context.Context, logplexURL string, line func(string)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, logplexURL, nil)
	if err != nil {
		return fmt.Errorf("log stream: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("log stream: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return fmt.Errorf("log stream: unexpected content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
			line(strings.TrimPrefix(d, " "))
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("log stream: %w", err)
	}
	return nil
}

// LogDrains lists an app's log drains (GET /apps/{app}/log-drains).
func (c *Client) LogDrains(ctx context.Context, app string) ([]api.LogDrain, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	var out []api.LogDrain
	if err := c.get(ctx, Path("apps", app, "log-drains"), &out); err != nil {
		return nil, err
	}
	return out, nil
}

// AddLogDrain adds a log drain (POST /apps/{app}/log-drains {"url": ...}).
func (c *Client) AddLogDrain(ctx context.Context, app, url string) (*api.LogDrain, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	var d api.LogDrain
	if err := c.send(ctx, http.MethodPost, Path("apps", app, "log-drains"), api.LogDrainCreateRequest{URL: url}, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// RemoveLogDrain removes a log drain named by id, URL or token
// (DELETE /apps/{app}/log-drains/{drain}).
func (c *Client) RemoveLogDrain(ctx context.Context, app, drain string) (*api.LogDrain, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("drain", drain); err != nil {
		return nil, err
	}
	var d api.LogDrain
	if err := c.send(ctx, http.MethodDelete, Path("apps", app, "log-drains", drain), nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}
