package client

import (
	"context"
	"net/http"

	"github.com/slipwayhq/slipway/api"
)

// Account returns the account the token belongs to (GET /account).
func (c *Client) Account(ctx context.Context) (*api.Account, error) {
	var a api.Account
	if err := c.get(ctx, "/account", &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// Apps lists every app, following Next-Range across pages (GET /apps).
func (c *Client) Apps(ctx context.Context) ([]api.App, error) {
	return List[api.App](ctx, c, "/apps", ListOptions{All: true})
}

// CreateApp creates an app (POST /apps). Nil fields of req are left to the
// server: a generated name, the default region and stack.
func (c *Client) CreateApp(ctx context.Context, req api.AppCreateRequest) (*api.App, error) {
	var a api.App
	if err := c.send(ctx, http.MethodPost, "/apps", req, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// App returns one app by name or id (GET /apps/{app}).
func (c *Client) App(ctx context.Context, app string) (*api.App, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	var a api.App
	if err := c.get(ctx, Path("apps", app), &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// UpdateApp changes an app's name, maintenance mode or build stack
// (PATCH /apps/{app}); nil fields of req are left unchanged.
func (c *Client) UpdateApp(ctx context.Context, app string, req api.AppUpdateRequest) (*api.App, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	var a api.App
	if err := c.send(ctx, http.MethodPatch, Path("apps", app), req, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// DeleteApp destroys an app (DELETE /apps/{app}) and returns the app as it
// was, when the server sends it back.
func (c *Client) DeleteApp(ctx context.Context, app string) (*api.App, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	var a api.App
	if err := c.send(ctx, http.MethodDelete, Path("apps", app), nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}
