package client

import (
	"context"
	"net/http"

	"github.com/slipwayhq/slipway/api"
)

// Dynos lists an app's dynos (GET /apps/{app}/dynos).
func (c *Client) Dynos(ctx context.Context, app string) ([]api.Dyno, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	var out []api.Dyno
	if err := c.get(ctx, Path("apps", app, "dynos"), &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Dyno returns one dyno by name or id (GET /apps/{app}/dynos/{dyno}).
func (c *Client) Dyno(ctx context.Context, app, dyno string) (*api.Dyno, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("dyno", dyno); err != nil {
		return nil, err
	}
	var out api.Dyno
	if err := c.get(ctx, Path("apps", app, "dynos", dyno), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RestartDynos restarts all of an app's dynos, those of one process type,
// or one dyno (DELETE /apps/{app}/dynos, .../formations/{type},
// .../dynos/{dyno}). Give at most one of typ and dyno.
func (c *Client) RestartDynos(ctx context.Context, app, typ, dyno string) error {
	if err := need("app", app); err != nil {
		return err
	}
	path := Path("apps", app, "dynos")
	switch {
	case dyno != "":
		path = Path("apps", app, "dynos", dyno)
	case typ != "":
		path = Path("apps", app, "formations", typ)
	}
	return c.send(ctx, http.MethodDelete, path, nil, nil)
}

// StopDynos stops one dyno or every dyno of a process type (POST
// .../dynos/{dyno}/actions/stop or .../formations/{type}/actions/stop).
func (c *Client) StopDynos(ctx context.Context, app, typ, dyno string) error {
	if err := need("app", app); err != nil {
		return err
	}
	path := Path("apps", app, "formations", typ, "actions", "stop")
	if dyno != "" {
		path = Path("apps", app, "dynos", dyno, "actions", "stop")
	} else if err := need("process type or dyno", typ); err != nil {
		return err
	}
	return c.send(ctx, http.MethodPost, path, map[string]any{}, nil)
}

// RunDyno starts a one-off dyno (POST /apps/{app}/dynos).
func (c *Client) RunDyno(ctx context.Context, app string, req api.DynoCreateRequest) (*api.Dyno, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	var out api.Dyno
	if err := c.send(ctx, http.MethodPost, Path("apps", app, "dynos"), req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
