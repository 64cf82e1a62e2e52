package client

import (
	"context"
	"net/http"

	"github.com/slipwayhq/slipway/api"
)

// Domains lists an app's domains (GET /apps/{app}/domains).
func (c *Client) Domains(ctx context.Context, app string) ([]api.Domain, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	return List[api.Domain](ctx, c, Path("apps", app, "domains"), ListOptions{All: true})
}

// Domain returns one of an app's domains by id or hostname
// (GET /apps/{app}/domains/{domain}).
func (c *Client) Domain(ctx context.Context, app, domain string) (*api.Domain, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("domain", domain); err != nil {
		return nil, err
	}
	var d api.Domain
	if err := c.get(ctx, Path("apps", app, "domains", domain), &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// AddDomain adds a custom hostname to an app
// (POST /apps/{app}/domains {"hostname": ...}).
func (c *Client) AddDomain(ctx context.Context, app, hostname string) (*api.Domain, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("hostname", hostname); err != nil {
		return nil, err
	}
	var d api.Domain
	body := api.DomainCreateRequest{Hostname: hostname}
	if err := c.send(ctx, http.MethodPost, Path("apps", app, "domains"), body, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// RemoveDomain removes a domain, by id or hostname, from an app
// (DELETE /apps/{app}/domains/{domain}) and returns it as it was, when the
// server sends it back.
func (c *Client) RemoveDomain(ctx context.Context, app, domain string) (*api.Domain, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("domain", domain); err != nil {
		return nil, err
	}
	var d api.Domain
	if err := c.send(ctx, http.MethodDelete, Path("apps", app, "domains", domain), nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}
