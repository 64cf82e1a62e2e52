package client

import (
	"context"
	"net/http"

	"github.com/slipwayhq/slipway/api"
)

// Formation lists an app's process types with their quantity and size
// (GET /apps/{app}/formation).
func (c *Client) Formation(ctx context.Context, app string) ([]api.Formation, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	return List[api.Formation](ctx, c, Path("apps", app, "formation"), ListOptions{All: true})
}

// FormationType returns one process type of an app's formation, by type
// or id (GET /apps/{app}/formation/{type}).
func (c *Client) FormationType(ctx context.Context, app, typ string) (*api.Formation, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("process type", typ); err != nil {
		return nil, err
	}
	var f api.Formation
	if err := c.get(ctx, Path("apps", app, "formation", typ), &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// UpdateFormation changes the quantity and/or size of several process
// types at once (PATCH /apps/{app}/formation {"updates": [...]}) and returns
// the process types the server reports back. A Relative quantity ("+1",
// "-2") is applied by the server to the current quantity.
func (c *Client) UpdateFormation(ctx context.Context, app string, updates []api.FormationUpdate) ([]api.Formation, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	var out []api.Formation
	body := api.FormationBatchRequest{Updates: updates}
	if err := c.send(ctx, http.MethodPatch, Path("apps", app, "formation"), body, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateFormationType changes one process type
// (PATCH /apps/{app}/formation/{type} {quantity, size}); a nil quantity or
// size is left unchanged, and a Relative quantity is added to the current
// one by the server.
func (c *Client) UpdateFormationType(ctx context.Context, app, typ string, quantity *api.Quantity, size *string) (*api.Formation, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("process type", typ); err != nil {
		return nil, err
	}
	body := struct {
		Quantity *api.Quantity `json:"quantity,omitempty"`
		Size     *string       `json:"size,omitempty"`
	}{quantity, size}
	var f api.Formation
	if err := c.send(ctx, http.MethodPatch, Path("apps", app, "formation", typ), body, &f); err != nil {
		return nil, err
	}
	return &f, nil
}
