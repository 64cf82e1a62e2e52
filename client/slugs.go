package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/slipwayhq/slipway/api"
)

// CreateSlug records a slug's metadata (POST /apps/{app}/slugs); the
// returned slug's Blob.URL is where to upload the tarball (UploadSlug).
func (c *Client) CreateSlug(ctx context.Context, app string, req api.SlugCreateRequest) (*api.Slug, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	var s api.Slug
	if err := c.send(ctx, http.MethodPost, Path("apps", app, "slugs"), req, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Slug returns one of an app's slugs (GET /apps/{app}/slugs/{id}).
func (c *Client) Slug(ctx context.Context, app, id string) (*api.Slug, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("slug", id); err != nil {
		return nil, err
	}
	var s api.Slug
	if err := c.get(ctx, Path("apps", app, "slugs", id), &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Slugs lists an app's slugs, oldest first (GET /apps/{app}/slugs, a
// Slipway extension; paged by created_at or id).
func (c *Client) Slugs(ctx context.Context, app string, opts ListOptions) ([]api.Slug, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if opts.Field == "" {
		opts.Field = "created_at"
	}
	return List[api.Slug](ctx, c, Path("apps", app, "slugs"), opts)
}

// UploadSlug PUTs a slug's tarball to its blob URL, as curl would: no
// Authorization header (the URL is signed). size is the body's length, or
// -1 if unknown. The server answers with the slug, now with its size.
func (c *Client) UploadSlug(ctx context.Context, blobURL string, body io.Reader, size int64) (*api.Slug, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, blobURL, body)
	if err != nil {
		return nil, fmt.Errorf("build slug upload: %w", err)
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	hc := &http.Client{Transport: c.http.Transport} // no overall timeout: slugs are big
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("uploading slug: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, decodeError(resp)
	}
	var s api.Slug
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, fmt.Errorf("decoding the slug upload's response: %w", err)
	}
	return &s, nil
}

// ClusterBlobs lists the cluster's blobs and where their copies are
// (GET /cluster/blobs, admin only).
func (c *Client) ClusterBlobs(ctx context.Context) ([]api.BlobInfo, error) {
	var out []api.BlobInfo
	if err := c.get(ctx, "/cluster/blobs", &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ReleaseSlug creates a release of an uploaded slug with the app's current
// config vars (POST /apps/{app}/releases {"slug": id, "description": ...});
// an empty description lets the server write "Deploy <commit>".
func (c *Client) ReleaseSlug(ctx context.Context, app, slugID, description string) (*api.Release, error) {
	if err := need("app", app); err != nil {
		return nil, err
	}
	if err := need("slug", slugID); err != nil {
		return nil, err
	}
	req := api.ReleaseCreateRequest{Slug: &slugID}
	if description != "" {
		req.Description = &description
	}
	var r api.Release
	if err := c.send(ctx, http.MethodPost, Path("apps", app, "releases"), req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
