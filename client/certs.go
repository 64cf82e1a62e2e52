package client

import (
	"context"
	"net/http"

	"github.com/slipwayhq/slipway/api"
)

// SNIEndpoints lists an app's TLS certificates
// (GET /apps/{app}/sni-endpoints).
func (c *Client) SNIEndpoints(ctx context.Context, app string) ([]api.SNIEndpoint, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	return List[api.SNIEndpoint](ctx, c, Path("apps", app, "sni-endpoints"), ListOptions{All: true})
}

// AddSNIEndpoint uploads a certificate chain and its private key, both
// PEM (POST /apps/{app}/sni-endpoints).
func (c *Client) AddSNIEndpoint(ctx context.Context, app, chainPEM, keyPEM string) (*api.SNIEndpoint, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	var ep api.SNIEndpoint
	body := api.SNIEndpointRequest{CertificateChain: chainPEM, PrivateKey: keyPEM}
	if err := c.send(ctx, http.MethodPost, Path("apps", app, "sni-endpoints"), body, &ep); err != nil {
		return nil, err
	}
	return &ep, nil
}

// UpdateSNIEndpoint replaces an endpoint's certificate and key, by id or
// name (PATCH /apps/{app}/sni-endpoints/{endpoint}).
func (c *Client) UpdateSNIEndpoint(ctx context.Context, app, endpoint, chainPEM, keyPEM string) (*api.SNIEndpoint, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("endpoint", endpoint); err != nil {
		return nil, err
	}
	var ep api.SNIEndpoint
	body := api.SNIEndpointRequest{CertificateChain: chainPEM, PrivateKey: keyPEM}
	if err := c.send(ctx, http.MethodPatch, Path("apps", app, "sni-endpoints", endpoint), body, &ep); err != nil {
		return nil, err
	}
	return &ep, nil
}

// RemoveSNIEndpoint removes a certificate, by id or name
// (DELETE /apps/{app}/sni-endpoints/{endpoint}).
func (c *Client) RemoveSNIEndpoint(ctx context.Context, app, endpoint string) (*api.SNIEndpoint, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("endpoint", endpoint); err != nil {
		return nil, err
	}
	var ep api.SNIEndpoint
	if err := c.send(ctx, http.MethodDelete, Path("apps", app, "sni-endpoints", endpoint), nil, &ep); err != nil {
		return nil, err
	}
	return &ep, nil
}
