package cluster

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Meta is what a node tells others about itself through gossip.
type Meta struct {
	Region         string `json:"r"`
	Zone           string `json:"z"`
	Raft           string `json:"raft"`
	RPC            string `json:"rpc"`
	API            string `json:"api,omitempty"`
	Router         string `json:"router,omitempty"`
	Version        string `json:"v,omitempty"`
	CommandVersion int    `json:"cv"`
	Draining       bool   `json:"d,omitempty"`
	Expect         int    `json:"e,omitempty"`
	// Dyno capacity: memory for dynos (MB) and the host ports dynos may use.
	MemoryMB  int `json:"mem,omitempty"`
	PortFirst int `json:"pf,omitempty"`
	PortLast  int `json:"pl,omitempty"`
	// Rendezvous is the host:port of the `heroku run` attach endpoint.
	Rendezvous string `json:"rv,omitempty"`
	// Leaving is announced just before a graceful leave. memberlist
	// reports a member that left (its own goodbye) and one declared dead
	// alike to NotifyLeave (the state it tracks is not in the Node it
	// passes: hashicorp/memberlist#266), so this flag, carried in the
	// node's last metadata, is what tells them apart.
	Leaving bool `json:"lv,omitempty"`
}

// Gossip states of a member.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// Member is a node as gossip sees it.
type Member struct {
	Name  string
	Addr  string // gossip address
	State string
	Meta  Meta
	// Since is when the member entered its current state (as seen here);
	// only tracked for dead and left members.
	Since time.Time
}

// pool wraps one memberlist (LAN or WAN). It keeps its own copy of every
// member, updated from memberlist's event callbacks (memberlist's own Node
// values are mutated under its lock, so they must not be read elsewhere),
// and remembers members that died or left, which memberlist forgets.
type pool struct {
	ml    *memberlist.Memberlist
	clock Clock

	mu     sync.Mutex
	meta   Meta
	live   map[string]Member // alive or suspect
	gone   map[string]Member // dead or left members by name
	notify chan struct{}
}

func newPool(clock Clock, meta Meta) *pool {
	return &pool{clock: clock, meta: meta, live: map[string]Member{}, gone: map[string]Member{}, notify: make(chan struct{}, 1)}
}

// delegate methods (memberlist.Delegate).

func (p *pool) NodeMeta(limit int) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, _ := json.Marshal(p.meta)
	if len(b) > limit {
		// Never happens with sane addresses; drop optional fields rather than fail.
		m := p.meta
		m.API, m.Router, m.Version = "", "", ""
		b, _ = json.Marshal(m)
	}
	return b
}
func (p *pool) NotifyMsg([]byte)                           {}
func (p *pool) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (p *pool) LocalState(join bool) []byte                { return nil }
func (p *pool) MergeRemoteState(buf []byte, join bool)     {}

// event delegate methods (memberlist.EventDelegate).

// NotifyJoin, NotifyLeave and NotifyUpdate are called by memberlist with
// its node lock held: copy what is needed, never keep n.
func (p *pool) NotifyJoin(n *memberlist.Node) {
	m := toMember(n)
	p.mu.Lock()
	delete(p.gone, n.Name)
	p.live[n.Name] = m
	p.mu.Unlock()
	p.poke()
}

func (p *pool) NotifyLeave(n *memberlist.Node) {
	m := toMember(n)
	st := StateDead
	if n.State == memberlist.StateLeft || m.Meta.Leaving {
		st = StateLeft
	}
	m.State, m.Since = st, p.clock.Now()
	p.mu.Lock()
	delete(p.live, n.Name)
	p.gone[n.Name] = m
	p.mu.Unlock()
	p.poke()
}

func (p *pool) NotifyUpdate(n *memberlist.Node) {
	m := toMember(n)
	p.mu.Lock()
	if _, ok := p.live[n.Name]; ok {
		p.live[n.Name] = m
	}
	p.mu.Unlock()
	p.poke()
}

func (p *pool) poke() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

func (p *pool) setMeta(f func(*Meta)) {
	p.mu.Lock()
	f(&p.meta)
	p.mu.Unlock()
}

func (p *pool) localMeta() Meta {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.meta
}

func toMember(n *memberlist.Node) Member {
	m := Member{Name: n.Name, Addr: n.Address()}
	_ = json.Unmarshal(n.Meta, &m.Meta)
	switch n.State {
	case memberlist.StateAlive:
		m.State = StateAlive
	case memberlist.StateSuspect:
		m.State = StateSuspect
	case memberlist.StateLeft:
		m.State = StateLeft
	default:
		m.State = StateDead
	}
	return m
}

// members lists live and remembered dead members, by name. (memberlist
// has no callback for suspicion, so a suspected member shows as alive until
// it is declared dead.)
func (p *pool) members() []Member {
	if p == nil || p.ml == nil {
		return nil
	}
	p.mu.Lock()
	out := make([]Member, 0, len(p.live)+len(p.gone))
	for _, m := range p.live {
		out = append(out, m)
	}
	for name, m := range p.gone {
		if _, ok := p.live[name]; !ok {
			out = append(out, m)
		}
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// forget drops a remembered dead member (after it was removed from Raft).
func (p *pool) forget(name string) {
	p.mu.Lock()
	delete(p.gone, name)
	p.mu.Unlock()
}

func memberlistConfig(c *Config, name string, wan bool, p *pool) *memberlist.Config {
	var mc *memberlist.Config
	if wan {
		mc = memberlist.DefaultWANConfig()
	} else {
		mc = memberlist.DefaultLANConfig()
	}
	switch {
	case c.Timing.GossipTest:
		mc.ProbeInterval = 200 * time.Millisecond
		mc.ProbeTimeout = 100 * time.Millisecond
		mc.GossipInterval = 50 * time.Millisecond
		mc.SuspicionMult = 2
		mc.PushPullInterval = 2 * time.Second
		mc.TCPTimeout = 2 * time.Second
		mc.GossipToTheDeadTime = 5 * time.Second
	case c.Timing.GossipFast && !wan:
		mc.ProbeInterval = 500 * time.Millisecond
		mc.ProbeTimeout = 250 * time.Millisecond
		mc.GossipInterval = 100 * time.Millisecond
		mc.PushPullInterval = 10 * time.Second
	}
	mc.Name = name
	mc.Delegate = p
	mc.Events = p
	mc.SecretKey = c.EncryptKey
	mc.Logger = stdLogger(c.Logger, "memberlist")
	if wan {
		mc.Logger = stdLogger(c.Logger, "memberlist-wan")
	}
	// Members are told apart by name; a node that restarts on a new address
	// replaces its old entry instead of being refused.
	mc.DeadNodeReclaimTime = 10 * time.Second
	return mc
}

func (n *Node) startPool(wan bool) (*pool, error) {
	c := n.cfg
	port, name := c.GossipPort, c.NodeName
	if wan {
		port, name = c.WANPort, c.NodeName+"."+c.Region
	}
	p := newPool(c.Clock, n.localMeta())
	mc := memberlistConfig(c, name, wan, p)
	tr, err := c.Network.MemberlistTransport(c.bind(port), mc.Logger)
	if err != nil {
		return nil, fmt.Errorf("gossip transport on %s: %w", c.bind(port), err)
	}
	mc.Transport = tr
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = port
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = tr.Shutdown()
		return nil, fmt.Errorf("starting gossip: %w", err)
	}
	p.ml = ml
	return p, nil
}
