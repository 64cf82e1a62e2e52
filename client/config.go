package client

import (
	"context"
	"net/http"
)

// ConfigVars returns an app's config vars (GET /apps/{app}/config-vars).
func (c *Client) ConfigVars(ctx context.Context, app string) (map[string]string, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	vars := map[string]string{}
	if err := c.get(ctx, Path("apps", app, "config-vars"), &vars); err != nil {
		return nil, err
	}
	return vars, nil
}

// UpdateConfigVars sets and unsets config vars in one change
// (PATCH /apps/{app}/config-vars): a non-nil value sets the key, a nil value
// is sent as JSON null and deletes it. It returns the app's full config vars
// after the change, which the server makes a new release.
func (c *Client) UpdateConfigVars(ctx context.Context, app string, vars map[string]*string) (map[string]string, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if vars == nil {
		vars = map[string]*string{}
	}
	out := map[string]string{}
	if err := c.send(ctx, http.MethodPatch, Path("apps", app, "config-vars"), vars, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ReleaseConfigVars returns the config vars as they were in a release, by
// release id or version number
// (GET /apps/{app}/releases/{release}/config-vars).
func (c *Client) ReleaseConfigVars(ctx context.Context, app, release string) (map[string]string, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("release", release); err != nil {
		return nil, err
	}
	vars := map[string]string{}
	if err := c.get(ctx, Path("apps", app, "releases", release, "config-vars"), &vars); err != nil {
		return nil, err
	}
	return vars, nil
}
