// Package agent runs one Slipway node: it loads the node's configuration,
// and wires the replicated state (fsm), cluster membership and Raft
// (cluster), and the admin API (api) together, with metrics, the initial
// admin token and the node records that the leader keeps up to date.
package agent

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/cluster"
)

// Config is a node's configuration: a JSON file, SLIPWAY_* environment
// variables and command-line flags, in increasing order of precedence.
type Config struct {
	// NodeName must be unique within the region.
	NodeName string `json:"node_name"`
	Region   string `json:"region"`
	Zone     string `json:"zone"`
	DataDir  string `json:"data_dir"`

	BindAddr      string `json:"bind_addr"`
	AdvertiseAddr string `json:"advertise_addr"`
	Ports         Ports  `json:"ports"`

	// Join and JoinWAN list gossip addresses (host:port) to join.
	Join    []string `json:"join"`
	JoinWAN []string `json:"join_wan"`
	// BootstrapExpect: form the region's Raft cluster once this many nodes
	// (all configured alike) see each other. 0 on nodes that only join.
	BootstrapExpect int `json:"bootstrap_expect"`
	// Voters is the target number of Raft voters: 1, 3 or 5.
	Voters int `json:"voters"`

	// Domain is the cluster domain: apps answer at APP.<domain>.
	Domain string `json:"domain"`
	// RouterURL, if set, is the public base URL of the routers (web_url);
	// by default it is http://<advertise addr>:<router port>.
	RouterURL string `json:"router_url"`

	// EncryptKey is a base64 key (16, 24 or 32 bytes) shared by all nodes:
	// it encrypts gossip and authenticates internal RPC. EncryptKeyFile
	// names a file holding it instead.
	EncryptKey     string `json:"encrypt_key"`
	EncryptKeyFile string `json:"encrypt_key_file"`

	// InitialAdminTokenFile holds the token the first leader registers as
	// the admin's. Without it, the first leader generates one and writes it
	// to <data_dir>/admin-token (mode 0600).
	InitialAdminTokenFile string `json:"initial_admin_token_file"`
	AdminEmail            string `json:"admin_email"`

	LogLevel  string `json:"log_level"`  // debug, info, warn, error
	LogFormat string `json:"log_format"` // text or json

	// Tuning (durations in Go syntax, e.g. "10m").
	DeadServerGrace     Duration `json:"dead_server_grace"`
	ServerStabilization Duration `json:"server_stabilization"`
	// RaftMultiplier scales Raft's timeouts (1 = 1 s heartbeat/election).
	RaftMultiplier float64 `json:"raft_multiplier"`
	// FastGossip shortens gossip probe intervals (for one LAN or loopback).
	FastGossip bool `json:"fast_gossip"`

	// Dynos: memory this node gives to dynos (MB; 0 = 80% of the machine's
	// memory) and the host ports dynos listen on.
	DynoMemoryMB int    `json:"dyno_memory_mb"`
	DynoPorts    string `json:"dyno_ports"` // "30000-39999"

	// Blobs tunes the blob store (agent/blob.go).
	Blobs BlobConfig `json:"blobs"`
	// DynoCycle is how often every dyno is restarted (Heroku: 24 h, plus
	// up to 15% jitter).
	DynoCycle Duration `json:"dyno_cycle"`
	// DynoLeftGrace is how long the dynos of a node whose agent stopped
	// gracefully (a restart, an upgrade) stay placed on it before they
	// move to other nodes (default 1m; drain a node to move them first).
	DynoLeftGrace Duration `json:"dyno_left_grace"`
	// DynoRestartBackoff lists the waits before restarting a crashed dyno
	// after its 1st, 2nd, ... consecutive crash (the last repeats).
	// Default Heroku's: "0s,20m,40m,60m,180m,320m".
	DynoRestartBackoff string `json:"dyno_restart_backoff"`
	// DynoSettings: the dyno supervisor and runtime (agent/dynos.go).
	DynoSettings
}

// Ports are a node's listening ports.
type Ports struct {
	API        int `json:"api"`
	Raft       int `json:"raft"`
	Gossip     int `json:"gossip"`
	WAN        int `json:"wan"`
	RPC        int `json:"rpc"`
	Router     int `json:"router"`
	RouterTLS  int `json:"router_tls"`
	Rendezvous int `json:"rendezvous"`
}

// Duration is a time.Duration that reads "10s" style strings from JSON.
type Duration struct{ time.Duration }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"10s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// DefaultConfig returns the settings used when nothing else is given.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		NodeName: host, Region: "local", Zone: "default", DataDir: "/var/lib/slipway",
		BindAddr: "0.0.0.0",
		Ports: Ports{API: cluster.DefaultAPIPort, Raft: cluster.DefaultRaftPort, Gossip: cluster.DefaultGossipPort,
			WAN: cluster.DefaultWANPort, RPC: cluster.DefaultRPCPort, Router: cluster.DefaultRouterPort, RouterTLS: cluster.DefaultRouterTLS,
			Rendezvous: cluster.DefaultRendezvousPort},
		DynoPorts: "30000-39999",
		Domain:    "localhost", AdminEmail: "", LogLevel: "info", LogFormat: "text", RaftMultiplier: 1,
	}
}

// LoadFile reads a JSON config file over cfg. Unknown keys are an error, so
// a typo does not silently fall back to a default.
func LoadFile(cfg *Config, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// EnvVars maps SLIPWAY_* variables to what they set.
func EnvVars() map[string]string {
	return map[string]string{
		"SLIPWAY_NODE_NAME": "node name", "SLIPWAY_REGION": "region", "SLIPWAY_ZONE": "zone",
		"SLIPWAY_DATA_DIR": "data directory", "SLIPWAY_BIND_ADDR": "bind address", "SLIPWAY_ADVERTISE_ADDR": "advertise address",
		"SLIPWAY_API_PORT": "API port", "SLIPWAY_RAFT_PORT": "Raft port", "SLIPWAY_GOSSIP_PORT": "gossip port",
		"SLIPWAY_WAN_PORT": "WAN gossip port", "SLIPWAY_RPC_PORT": "internal RPC port", "SLIPWAY_ROUTER_PORT": "router HTTP port",
		"SLIPWAY_ROUTER_TLS_PORT": "router HTTPS port", "SLIPWAY_JOIN": "comma-separated gossip addresses to join",
		"SLIPWAY_JOIN_WAN": "comma-separated WAN gossip addresses", "SLIPWAY_BOOTSTRAP_EXPECT": "bootstrap-expect",
		"SLIPWAY_VOTERS": "target Raft voters", "SLIPWAY_DOMAIN": "cluster domain", "SLIPWAY_ENCRYPT_KEY": "gossip/RPC key (base64)",
		"SLIPWAY_INITIAL_ADMIN_TOKEN_FILE": "initial admin token file", "SLIPWAY_LOG_LEVEL": "log level",
	}
}

// ApplyEnv applies SLIPWAY_* variables from environ (os.Environ form).
func ApplyEnv(cfg *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "SLIPWAY_") {
			env[k] = v
		}
	}
	var errs []error
	str := func(k string, dst *string) {
		if v, ok := env[k]; ok {
			*dst = v
		}
	}
	num := func(k string, dst *int) {
		if v, ok := env[k]; ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q is not a number", k, v))
				return
			}
			*dst = n
		}
	}
	list := func(k string, dst *[]string) {
		if v, ok := env[k]; ok {
			*dst = splitList(v)
		}
	}
	str("SLIPWAY_NODE_NAME", &cfg.NodeName)
	str("SLIPWAY_REGION", &cfg.Region)
	str("SLIPWAY_ZONE", &cfg.Zone)
	str("SLIPWAY_DATA_DIR", &cfg.DataDir)
	str("SLIPWAY_BIND_ADDR", &cfg.BindAddr)
	str("SLIPWAY_ADVERTISE_ADDR", &cfg.AdvertiseAddr)
	num("SLIPWAY_API_PORT", &cfg.Ports.API)
	num("SLIPWAY_RAFT_PORT", &cfg.Ports.Raft)
	num("SLIPWAY_GOSSIP_PORT", &cfg.Ports.Gossip)
	num("SLIPWAY_WAN_PORT", &cfg.Ports.WAN)
	num("SLIPWAY_RPC_PORT", &cfg.Ports.RPC)
	num("SLIPWAY_ROUTER_PORT", &cfg.Ports.Router)
	num("SLIPWAY_ROUTER_TLS_PORT", &cfg.Ports.RouterTLS)
	list("SLIPWAY_JOIN", &cfg.Join)
	list("SLIPWAY_JOIN_WAN", &cfg.JoinWAN)
	num("SLIPWAY_BOOTSTRAP_EXPECT", &cfg.BootstrapExpect)
	num("SLIPWAY_VOTERS", &cfg.Voters)
	str("SLIPWAY_DOMAIN", &cfg.Domain)
	str("SLIPWAY_ENCRYPT_KEY", &cfg.EncryptKey)
	str("SLIPWAY_INITIAL_ADMIN_TOKEN_FILE", &cfg.InitialAdminTokenFile)
	str("SLIPWAY_LOG_LEVEL", &cfg.LogLevel)
	return errors.Join(errs...)
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Validate checks the configuration and fills derived defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("node_name is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is required"))
	}
	if c.AdvertiseAddr == "" {
		ip := net.ParseIP(c.BindAddr)
		if ip == nil || ip.IsUnspecified() {
			errs = append(errs, errors.New("advertise_addr is required when bind_addr is not a specific IP address"))
		} else {
			c.AdvertiseAddr = c.BindAddr
		}
	}
	ports := map[int]string{}
	for name, p := range map[string]int{"api": c.Ports.API, "raft": c.Ports.Raft, "gossip": c.Ports.Gossip, "rpc": c.Ports.RPC} {
		if p <= 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("ports.%s %d is out of range", name, p))
		}
		if other, dup := ports[p]; dup {
			errs = append(errs, fmt.Errorf("ports.%s and ports.%s are both %d", name, other, p))
		}
		ports[p] = name
	}
	if c.Domain == "" {
		errs = append(errs, errors.New("domain is required"))
	}
	if c.RaftMultiplier <= 0 {
		c.RaftMultiplier = 1
	}
	if _, err := c.encryptKey(); err != nil {
		errs = append(errs, err)
	}
	if _, _, err := c.dynoPorts(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.schedulerConfig(); err != nil {
		errs = append(errs, err)
	}
	if c.DynoMemoryMB < 0 {
		errs = append(errs, errors.New("dyno_memory_mb must not be negative"))
	}
	if err := c.DynoSettings.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// dynoPorts parses the dyno port range.
func (c *Config) dynoPorts() (first, last int, err error) {
	a, b, ok := strings.Cut(c.DynoPorts, "-")
	first, err1 := strconv.Atoi(strings.TrimSpace(a))
	last, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || first < 1024 || last > 65535 || first > last {
		return 0, 0, fmt.Errorf("dyno_ports %q must be a range like 30000-39999 within 1024-65535", c.DynoPorts)
	}
	return first, last, nil
}

// dynoMemoryMB is the memory given to dynos: configured, or 80% of the
// machine's.
func (c *Config) dynoMemoryMB() int {
	if c.DynoMemoryMB > 0 {
		return c.DynoMemoryMB
	}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 1024
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.Atoi(f[1])
			return kb / 1024 * 8 / 10
		}
	}
	return 1024
}

func (c *Config) rendezvousAddr() string {
	return net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.Ports.Rendezvous))
}

func (c *Config) encryptKey() ([]byte, error) {
	k := c.EncryptKey
	if k == "" && c.EncryptKeyFile != "" {
		b, err := os.ReadFile(c.EncryptKeyFile)
		if err != nil {
			return nil, fmt.Errorf("reading encrypt_key_file: %w", err)
		}
		k = strings.TrimSpace(string(b))
	}
	if k == "" {
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(k)
	if err != nil {
		return nil, fmt.Errorf("encrypt key is not valid base64: %w", err)
	}
	if l := len(key); l != 16 && l != 24 && l != 32 {
		return nil, fmt.Errorf("encrypt key must decode to 16, 24 or 32 bytes, not %d", l)
	}
	return key, nil
}

func (c *Config) apiURL() string {
	return fmt.Sprintf("http://%s", net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.Ports.API)))
}

func (c *Config) routerURL() string {
	if c.RouterURL != "" {
		return c.RouterURL
	}
	return fmt.Sprintf("http://%s", net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.Ports.Router)))
}
