package client

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/slipwayhq/slipway/api"
)

// CreateBuild starts a build of a source tarball (POST /apps/{app}/builds).
func (c *Client) CreateBuild(ctx context.Context, app, sourceURL, version string, buildpacks []string) (*api.Build, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	var req api.BuildCreateRequest
	req.SourceBlob.URL = sourceURL
	if version != "" {
		req.SourceBlob.Version = &version
	}
	for _, b := range buildpacks {
		req.Buildpacks = append(req.Buildpacks, struct {
			URL  string `json:"url"`
			Name string `json:"name"`
		}{URL: b})
	}
	var b api.Build
	if err := c.send(ctx, http.MethodPost, Path("apps", app, "builds"), req, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// Builds lists an app's builds, oldest first.
func (c *Client) Builds(ctx context.Context, app string, opts ListOptions) ([]api.Build, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if opts.Field == "" {
		opts.Field = "created_at"
	}
	return List[api.Build](ctx, c, Path("apps", app, "builds"), opts)
}

// Build returns one build.
func (c *Client) Build(ctx context.Context, app, id string) (*api.Build, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("build", id); err != nil {
		return nil, err
	}
	var b api.Build
	if err := c.get(ctx, Path("apps", app, "builds", id), &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// StreamOutput copies a build's output_stream_url to w until the output
// ends (no Authorization: the URL is signed).
func (c *Client) StreamOutput(ctx context.Context, url string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: c.http.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("reading the build output: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// CreateSource returns URLs to upload a source tarball to and to build from
// (POST /sources).
func (c *Client) CreateSource(ctx context.Context) (*api.SourceCreated, error) {
	var s api.SourceCreated
	if err := c.send(ctx, http.MethodPost, "/sources", map[string]any{}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// UploadSource PUTs a tarball to a source's put_url.
func (c *Client) UploadSource(ctx context.Context, putURL string, body io.Reader, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, putURL, body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	hc := &http.Client{Transport: c.http.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("uploading the source: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	return nil
}

// Buildpacks lists an app's buildpacks (GET buildpack-installations).
func (c *Client) Buildpacks(ctx context.Context, app string) ([]api.BuildpackInstallation, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	var out []api.BuildpackInstallation
	if err := c.get(ctx, Path("apps", app, "buildpack-installations"), &out); err != nil {
		return nil, err
	}
	return out, nil
}

// SetBuildpacks replaces an app's buildpacks (empty: detect).
func (c *Client) SetBuildpacks(ctx context.Context, app string, buildpacks []string) ([]api.BuildpackInstallation, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	var req api.BuildpackInstallationsUpdate
	for _, b := range buildpacks {
		req.Updates = append(req.Updates, struct {
			Buildpack string `json:"buildpack"`
		}{b})
	}
	if req.Updates == nil {
		req.Updates = []struct {
			Buildpack string `json:"buildpack"`
		}{}
	}
	var out []api.BuildpackInstallation
	if err := c.send(ctx, http.MethodPut, Path("apps", app, "buildpack-installations"), req, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// PurgeBuildCache deletes an app's build cache.
func (c *Client) PurgeBuildCache(ctx context.Context, app string) error {
	if err := need("app", app); err != nil {
		return err
	}
	return c.send(ctx, http.MethodDelete, Path("apps", app, "build-cache"), nil, nil)
}
