package client

import (
	"context"
	"net/http"

	"github.com/slipwayhq/slipway/api"
)

// Features lists an app's feature flags (GET /apps/{app}/features).
func (c *Client) Features(ctx context.Context, app string) ([]api.AppFeature, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	return List[api.AppFeature](ctx, c, Path("apps", app, "features"), ListOptions{All: true})
}

// Feature returns one of an app's feature flags by name or id
// (GET /apps/{app}/features/{feature}).
func (c *Client) Feature(ctx context.Context, app, feature string) (*api.AppFeature, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("feature", feature); err != nil {
		return nil, err
	}
	var f api.AppFeature
	if err := c.get(ctx, Path("apps", app, "features", feature), &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// SetFeature enables or disables one of an app's feature flags
// (PATCH /apps/{app}/features/{feature} {"enabled": ...}).
func (c *Client) SetFeature(ctx context.Context, app, feature string, enabled bool) (*api.AppFeature, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("feature", feature); err != nil {
		return nil, err
	}
	var f api.AppFeature
	body := map[string]bool{"enabled": enabled}
	if err := c.send(ctx, http.MethodPatch, Path("apps", app, "features", feature), body, &f); err != nil {
		return nil, err
	}
	return &f, nil
}
