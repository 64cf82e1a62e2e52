// Package client is a typed Go client for a Slipway cluster's API: the
// Heroku Platform API v3 subset Slipway serves plus the cluster admin
// endpoints under /cluster.
//
// Create a client with New, or find the API URL and token the way the
// slipway CLI does with FromEnv:
//
//	baseURL, token, err := client.FromEnv()
//	if err != nil {
//		return err
//	}
//	c := client.New(baseURL, token)
//	app, err := c.CreateApp(ctx, api.AppCreateRequest{})
//
// Every request carries the Heroku v3 Accept header and a Bearer token.
// Responses with a 4xx or 5xx status come back as *Error, which carries the
// status and the API's {id, message} body; use errors.As to inspect it.
// Failures to reach the server are returned wrapped, naming the URL.
//
// The typed methods cover the endpoints that exist today. For anything else,
// Do sends an arbitrary request with the same headers and error handling,
// Path builds a safely escaped path, and List pages through a list endpoint
// by following Next-Range.
//
// Credentials are read from SLIPWAY_API_URL and SLIPWAY_API_TOKEN, or from a
// JSON credentials file (see CredentialsPath) that SaveCredentials writes.
package client
