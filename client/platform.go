package client

import (
	"context"
	"net/http"

	"github.com/slipwayhq/slipway/api"
)

// Regions lists the cluster's regions (GET /regions).
func (c *Client) Regions(ctx context.Context) ([]api.Region, error) {
	return List[api.Region](ctx, c, "/regions", ListOptions{All: true})
}

// Stacks lists the stacks apps can be built on (GET /stacks).
func (c *Client) Stacks(ctx context.Context) ([]api.Stack, error) {
	return List[api.Stack](ctx, c, "/stacks", ListOptions{All: true})
}

// Nodes lists the cluster's nodes as the answering node sees them
// (GET /cluster/nodes).
func (c *Client) Nodes(ctx context.Context) ([]api.NodeInfo, error) {
	var nodes []api.NodeInfo
	if err := c.get(ctx, "/cluster/nodes", &nodes); err != nil {
		return nil, err
	}
	return nodes, nil
}

// Raft returns the answering node's view of its region's Raft group
// (GET /cluster/raft).
func (c *Client) Raft(ctx context.Context) (*api.RaftInfo, error) {
	var r api.RaftInfo
	if err := c.get(ctx, "/cluster/raft", &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// DrainNode marks a node draining (no new dynos are placed on it) or, with
// draining false, undrains it (POST /cluster/nodes/{name}/drain).
func (c *Client) DrainNode(ctx context.Context, name string, draining bool) (*api.NodeInfo, error) {
	if err := need("node name", name); err != nil {
		return nil, err
	}
	var n api.NodeInfo
	body := api.DrainRequest{Draining: &draining}
	if err := c.send(ctx, http.MethodPost, Path("cluster", "nodes", name, "drain"), body, &n); err != nil {
		return nil, err
	}
	return &n, nil
}
