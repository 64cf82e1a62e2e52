package client

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// maxPages stops List from following a server that never stops paging.
const maxPages = 10000

// ListOptions selects a page of a list endpoint with a Range header, the way
// the Heroku API pages lists: "version ..; max=15, order=desc".
type ListOptions struct {
	// Field is the field the server sorts and pages by ("id", "name",
	// "version", ...). Empty means "id". It is only sent when Max or Order
	// is set.
	Field string
	// Max is the page size; 0 leaves it to the server (200 on Heroku).
	Max int
	// Order is "asc", "desc" or empty for the server's default.
	Order string
	// All follows Next-Range until the server returns the last page and
	// returns every item; otherwise only the first page is returned.
	All bool
}

// rangeHeader returns the Range header for the first page, or "" when the
// server's defaults apply.
func (o ListOptions) rangeHeader() (string, error) {
	if o.Max < 0 {
		return "", fmt.Errorf("client: negative page size %d", o.Max)
	}
	switch o.Order {
	case "", "asc", "desc":
	default:
		return "", fmt.Errorf("client: order %q is neither asc nor desc", o.Order)
	}
	if o.Max == 0 && o.Order == "" {
		return "", nil
	}
	field := o.Field
	if field == "" {
		field = "id"
	}
	var params []string
	if o.Max > 0 {
		params = append(params, "max="+strconv.Itoa(o.Max))
	}
	if o.Order != "" {
		params = append(params, "order="+o.Order)
	}
	return field + " ..; " + strings.Join(params, ", "), nil
}

// List GETs the list endpoint at path (see Path) and decodes its items as T.
// With opts.All it sends each Next-Range the server returns (with a 206
// status) as the next request's Range header and concatenates the pages;
// otherwise it returns the first page only. Use json.RawMessage as T to keep
// each item's raw JSON.
func List[T any](ctx context.Context, c *Client, path string, opts ListOptions) ([]T, error) {
	rng, err := opts.rangeHeader()
	if err != nil {
		return nil, err
	}
	var all []T
	for page := 1; ; page++ {
		var hdr http.Header
		if rng != "" {
			hdr = http.Header{"Range": {rng}}
		}
		var items []T
		resp, err := c.Do(ctx, http.MethodGet, path, nil, &items, hdr)
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		next := resp.Header.Get("Next-Range")
		if !opts.All || resp.StatusCode != http.StatusPartialContent || next == "" {
			return all, nil
		}
		if next == rng {
			return nil, fmt.Errorf("GET %s: server sent Next-Range %q equal to the Range it answered", c.baseURL+path, next)
		}
		if page >= maxPages {
			return nil, fmt.Errorf("GET %s: gave up after %d pages", c.baseURL+path, page)
		}
		rng = next
	}
}
