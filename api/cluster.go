package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"

	"github.com/gorilla/mux"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/fsm"
)

func requireAdmin(r *http.Request) error {
	if u := currentUser(r); u == nil || !u.Admin {
		return apiErr(http.StatusForbidden, fsm.CodeForbidden, "Only cluster administrators may use the /cluster endpoints.")
	}
	return nil
}

// nodeInfos merges what gossip, Raft and the replicated node records know.
func (s *Server) nodeInfos() ([]NodeInfo, error) {
	c := s.b.Cluster()
	st, err := c.Status()
	if err != nil {
		return nil, err
	}
	roles := map[string]cluster.Server{}
	for _, sv := range st.Servers {
		roles[sv.ID] = sv
	}
	snap := s.b.Snap()
	byName := map[string]*NodeInfo{}
	for _, m := range c.Members() {
		n := &NodeInfo{Name: m.Name, Region: m.Meta.Region, Zone: m.Meta.Zone, GossipState: m.State,
			Version: m.Meta.Version, Draining: m.Meta.Draining,
			Addresses: NodeAddresses{API: m.Meta.API, Raft: m.Meta.Raft, Gossip: m.Addr, RPC: m.Meta.RPC, Router: m.Meta.Router}}
		byName[m.Name] = n
	}
	for _, rec := range snap.Nodes() {
		n, ok := byName[rec.Name]
		if !ok {
			n = &NodeInfo{Name: rec.Name, Region: rec.Region, Zone: rec.Zone, GossipState: "unknown", Version: rec.Version}
			byName[rec.Name] = n
		}
		n.Draining = rec.Draining
	}
	for id, sv := range roles {
		n, ok := byName[id]
		if !ok {
			n = &NodeInfo{Name: id, GossipState: "unknown", Addresses: NodeAddresses{Raft: sv.Address}}
			byName[id] = n
		}
		switch {
		case sv.Leader:
			n.RaftRole = "leader"
		case sv.Voter:
			n.RaftRole = "voter"
		default:
			n.RaftRole = "non-voter"
		}
		n.Healthy = sv.Healthy
	}
	out := make([]NodeInfo, 0, len(byName))
	for _, n := range byName {
		if n.RaftRole == "" {
			n.RaftRole = "none"
		}
		out = append(out, *n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *Server) clusterNodes(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r); err != nil {
		return err
	}
	nodes, err := s.nodeInfos()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, nodes)
	return nil
}

func (s *Server) clusterDrain(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r); err != nil {
		return err
	}
	name := mux.Vars(r)["name"]
	var req DrainRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	draining := true
	if req.Draining != nil {
		draining = *req.Draining
	}
	if _, ok := s.b.Snap().Node(name); !ok {
		return notFound("node")
	}
	if _, err := s.submit(r, fsm.CmdNodeDrain, fsm.NodeDrain{Name: name, Draining: draining}); err != nil {
		return err
	}
	nodes, err := s.nodeInfos()
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if n.Name == name {
			n.Draining = draining
			writeJSON(w, http.StatusOK, n)
			return nil
		}
	}
	return notFound("node")
}

func (s *Server) clusterRaft(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r); err != nil {
		return err
	}
	c := s.b.Cluster()
	st, err := c.Status()
	if err != nil {
		return err
	}
	zones := map[string]string{}
	for _, m := range c.Members() {
		zones[m.Name] = m.Meta.Zone
	}
	out := RaftInfo{Node: st.Node, State: st.State, Leader: st.Leader, LeaderAddress: st.LeaderAddress, Term: st.Term,
		CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, LastIndex: st.LastIndex, LastContact: st.LastContact,
		Healthy: st.Healthy, FailureTolerance: st.FailureTolerance, Peers: []RaftPeer{}}
	for _, sv := range st.Servers {
		role := "non-voter"
		if sv.Leader {
			role = "leader"
		} else if sv.Voter {
			role = "voter"
		}
		out.Peers = append(out.Peers, RaftPeer{Name: sv.ID, Address: sv.Address, Zone: zones[sv.ID], Role: role, Healthy: sv.Healthy})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// clusterCA serves the cluster CA's certificate (PEM): clients trust it to
// verify the nodes' TLS endpoints (`heroku run` reads NODE_EXTRA_CA_CERTS).
func (s *Server) clusterCA(w http.ResponseWriter, r *http.Request) error {
	m, ok := s.b.Snap().Meta("cluster_ca")
	if !ok {
		return apiErr(http.StatusServiceUnavailable, "unavailable", "The cluster CA has not been created yet (the cluster is still forming).")
	}
	var ca struct {
		Cert string `json:"cert"`
	}
	if err := json.Unmarshal(m.Value, &ca); err != nil || ca.Cert == "" {
		return fmt.Errorf("reading the cluster CA: %w", err)
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write([]byte(ca.Cert))
	return nil
}
