package client

import (
	"context"
	"net/http"

	"github.com/slipwayhq/slipway/api"
)

// Releases lists an app's releases (GET /apps/{app}/releases), paged by
// version: ListOptions{Max: 15, Order: "desc"} is the newest 15, and All
// follows Next-Range to the end. opts.Field is ignored.
func (c *Client) Releases(ctx context.Context, app string, opts ListOptions) ([]api.Release, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	opts.Field = "version"
	return List[api.Release](ctx, c, Path("apps", app, "releases"), opts)
}

// Release returns one release by id or version number
// (GET /apps/{app}/releases/{release}).
func (c *Client) Release(ctx context.Context, app, release string) (*api.Release, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("release", release); err != nil {
		return nil, err
	}
	var r api.Release
	if err := c.get(ctx, Path("apps", app, "releases", release), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Rollback rolls an app back to an earlier release, given by id or version
// number (POST /apps/{app}/releases {"release": ...}). The server copies
// that release's slug and config vars into a new release, which is
// returned.
func (c *Client) Rollback(ctx context.Context, app, release string) (*api.Release, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("release", release); err != nil {
		return nil, err
	}
	var r api.Release
	body := map[string]string{"release": release}
	if err := c.send(ctx, http.MethodPost, Path("apps", app, "releases"), body, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
