package cluster_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/cluster/clustertest"
)

const wait = 60 * time.Second

func zonesOfVoters(t *testing.T, h *clustertest.Harness, servers []cluster.Server) string {
	t.Helper()
	var zs []string
	for _, s := range servers {
		if s.Voter {
			zs = append(zs, h.Get(s.ID).Zone)
		}
	}
	sort.Strings(zs)
	return strings.Join(zs, "")
}

func startThree(t *testing.T, h *clustertest.Harness) {
	t.Helper()
	for i, z := range []string{"a", "b", "c"} {
		h.Start(fmt.Sprintf("n%d", i+1), z, 3)
	}
}

func TestBootstrapExpectFormsZoneSpreadVoters(t *testing.T) {
	h := clustertest.New(t, clustertest.Options{})
	startThree(t, h)
	h.Eventually(wait, "3 voters in zones a, b, c", func() error {
		if z := zonesOfVoters(t, h, h.Servers(wait)); z != "abc" {
			return fmt.Errorf("voter zones %q", z)
		}
		return nil
	})
	ctx := context.Background()
	for _, n := range []string{"n1", "n2", "n3"} {
		if err := h.Set(ctx, n, "k-"+n, n); err != nil {
			t.Fatalf("write through %s: %v", n, err)
		}
	}
	h.Eventually(wait, "every replica has every write", func() error {
		for _, m := range h.Running() {
			for _, n := range []string{"n1", "n2", "n3"} {
				if m.Get("k-"+n) != n {
					return fmt.Errorf("%s lacks k-%s", m.Name, n)
				}
			}
		}
		return nil
	})
}

func TestJoiningNodesBecomeNonVoters(t *testing.T) {
	h := clustertest.New(t, clustertest.Options{})
	startThree(t, h)
	h.Leader(wait)
	h.Start("n4", "a", 0)
	h.Start("n5", "b", 0)
	h.Eventually(wait, "5 servers, 3 voters in a, b, c, joiners non-voters", func() error {
		s := h.Servers(wait)
		if len(s) != 5 {
			return fmt.Errorf("%d servers", len(s))
		}
		for _, sv := range s {
			if (sv.ID == "n4" || sv.ID == "n5") && sv.Voter {
				return fmt.Errorf("joiner %s votes", sv.ID)
			}
		}
		if z := zonesOfVoters(t, h, s); z != "abc" {
			return fmt.Errorf("voter zones %q", z)
		}
		return nil
	})
	// The joiners hold the full state.
	if err := h.Set(context.Background(), "n5", "hello", "world"); err != nil {
		t.Fatal(err)
	}
	h.Eventually(wait, "n4 replicates", func() error {
		if v := h.Get("n4").Get("hello"); v != "world" {
			return fmt.Errorf("n4 has %q", v)
		}
		return nil
	})
}

func TestFiveVotersArePlacedTwoTwoOne(t *testing.T) {
	h := clustertest.New(t, clustertest.Options{Voters: 5})
	startThree(t, h)
	h.Leader(wait)
	for i, z := range []string{"a", "b", "c"} {
		h.Start(fmt.Sprintf("n%d", i+4), z, 0)
	}
	h.Eventually(wait, "5 voters placed 2/2/1", func() error {
		z := zonesOfVoters(t, h, h.Servers(wait))
		if len(z) != 5 {
			return fmt.Errorf("voter zones %q", z)
		}
		counts := map[rune]int{}
		for _, c := range z {
			counts[c]++
		}
		for zone, n := range counts {
			if n > 2 {
				return fmt.Errorf("zone %c has %d voters (%s)", zone, n, z)
			}
		}
		return nil
	})
}

func TestLeaderLossKeepsAcknowledgedWrites(t *testing.T) {
	h := clustertest.New(t, clustertest.Options{})
	startThree(t, h)
	leader := h.Leader(wait)
	ctx := context.Background()
	var acked []string
	for i := 0; i < 30; i++ {
		via := []string{"n1", "n2", "n3"}[i%3]
		k := fmt.Sprintf("w%d", i)
		if err := h.Set(ctx, via, k, k); err != nil {
			t.Fatalf("write %d via %s: %v", i, via, err)
		}
		acked = append(acked, k)
	}
	h.Kill(leader.Name)
	var survivor string
	for _, m := range h.Running() {
		survivor = m.Name
	}
	start := time.Now()
	h.Eventually(wait, "a write through a survivor after the leader died", func() error {
		return h.Set(ctx, survivor, "after", "kill")
	})
	t.Logf("write through %s succeeded %v after killing leader %s", survivor, time.Since(start).Round(time.Millisecond), leader.Name)
	for _, m := range h.Running() {
		for _, k := range acked {
			if m.Get(k) != k {
				t.Fatalf("%s lost acknowledged write %s", m.Name, k)
			}
		}
	}
	// The old leader restarts from its disk and catches up.
	h.Start(leader.Name, leader.Zone, 3)
	h.Eventually(wait, "the restarted node catches up", func() error {
		if v := h.Get(leader.Name).Get("after"); v != "kill" {
			return fmt.Errorf("has %q", v)
		}
		return nil
	})
}

func TestPartitionedMinorityRefusesWritesAndConverges(t *testing.T) {
	h := clustertest.New(t, clustertest.Options{HoldTimeout: 2 * time.Second})
	startThree(t, h)
	leader := h.Leader(wait)
	ctx := context.Background()
	if err := h.Set(ctx, leader.Name, "before", "1"); err != nil {
		t.Fatal(err)
	}
	// Cut off the leader: it is the minority.
	h.Net.Isolate(leader.Name)
	err := h.Set(ctx, leader.Name, "minority", "x")
	if err == nil {
		t.Fatalf("the minority accepted a write")
	}
	if !errors.Is(err, cluster.ErrNoLeader) {
		t.Logf("minority write failed with: %v", err)
	}
	var majority []string
	for _, m := range h.Running() {
		if m.Name != leader.Name {
			majority = append(majority, m.Name)
		}
	}
	h.Eventually(wait, "the majority elects a leader and takes writes", func() error {
		return h.Set(ctx, majority[0], "majority", "y")
	})
	if v := leader.Get("majority"); v != "" {
		t.Fatalf("the isolated node saw a write it could not have received")
	}
	h.Net.Heal()
	h.Eventually(wait, "the old leader converges", func() error {
		if v := leader.Get("majority"); v != "y" {
			return fmt.Errorf("has %q", v)
		}
		return nil
	})
	// The refused write never appears anywhere.
	for _, m := range h.Running() {
		if m.Get("minority") != "" {
			t.Fatalf("%s has the refused write", m.Name)
		}
	}
}

func TestSnapshotInstallOnNewNodeAndRestoreFromDisk(t *testing.T) {
	timing := clustertest.TestTiming()
	timing.SnapshotThreshold = 64
	timing.TrailingLogs = 16
	timing.SnapshotInterval = 500 * time.Millisecond
	h := clustertest.New(t, clustertest.Options{Timing: &timing})
	startThree(t, h)
	leader := h.Leader(wait)
	ctx := context.Background()
	for i := 0; i < 300; i++ {
		if err := h.Set(ctx, leader.Name, fmt.Sprintf("k%d", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := leader.Node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	// A new node cannot get the old entries from the log (compacted): it
	// must install the snapshot.
	h.Start("n4", "a", 0)
	h.Eventually(wait, "n4 has all 300 keys", func() error {
		m := h.Get("n4")
		for i := 0; i < 300; i += 37 {
			if m.Get(fmt.Sprintf("k%d", i)) != fmt.Sprint(i) {
				return fmt.Errorf("missing k%d", i)
			}
		}
		if m.Get("k299") != "299" {
			return errors.New("missing k299")
		}
		return nil
	})
	// A follower restarted from disk restores snapshot + log.
	var follower *clustertest.Member
	for _, m := range h.Running() {
		if m.Name != leader.Name && m.Name != "n4" {
			follower = m
		}
	}
	// Raft refuses to snapshot while a configuration change is being
	// applied (n4 just joined); retry until it is allowed.
	h.Eventually(wait, "a snapshot on "+follower.Name, follower.Node.Snapshot)
	h.Kill(follower.Name)
	m := h.Start(follower.Name, follower.Zone, 3)
	h.Eventually(wait, "restarted follower restores its state", func() error {
		if m.Get("k150") != "150" || m.Get("k299") != "299" {
			return errors.New("state not restored")
		}
		return nil
	})
}

func TestDeadVoterIsReplacedFromItsZoneAndRemovedAfterGrace(t *testing.T) {
	h := clustertest.New(t, clustertest.Options{DeadServerGrace: 4 * time.Second, Stabilization: time.Second})
	startThree(t, h)
	leader := h.Leader(wait)
	for i, z := range []string{"a", "b", "c"} {
		h.Start(fmt.Sprintf("n%d", i+4), z, 0)
	}
	h.Eventually(wait, "6 servers", func() error {
		if s := h.Servers(wait); len(s) != 6 {
			return fmt.Errorf("%d servers", len(s))
		}
		return nil
	})
	// Kill a voter that is not the leader.
	var victim *clustertest.Member
	for _, s := range h.Servers(wait) {
		if s.Voter && s.ID != leader.Name {
			victim = h.Get(s.ID)
			break
		}
	}
	h.Kill(victim.Name)
	h.Eventually(wait, "a voter from "+victim.Zone+" replaces "+victim.Name, func() error {
		s := h.Servers(wait)
		for _, sv := range s {
			if sv.ID == victim.Name && sv.Voter {
				return fmt.Errorf("%s still votes", victim.Name)
			}
		}
		if z := zonesOfVoters(t, h, s); z != "abc" {
			return fmt.Errorf("voter zones %q", z)
		}
		return nil
	})
	h.Eventually(wait, victim.Name+" removed after the grace period", func() error {
		for _, sv := range h.Servers(wait) {
			if sv.ID == victim.Name {
				return fmt.Errorf("%s still in the configuration", victim.Name)
			}
		}
		return nil
	})
}

func TestLinearizableRead(t *testing.T) {
	h := clustertest.New(t, clustertest.Options{})
	startThree(t, h)
	leader := h.Leader(wait)
	if err := h.Set(context.Background(), leader.Name, "x", "1"); err != nil {
		t.Fatal(err)
	}
	for _, m := range h.Running() {
		if err := m.Node.WaitForLinearizable(context.Background()); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if m.Get("x") != "1" {
			t.Fatalf("%s: linearizable read missed a committed write", m.Name)
		}
	}
}

func TestGracefulShutdownTransfersLeadership(t *testing.T) {
	// Elections only after 10 s without a leader: a new leader within the
	// 8 s allowed below can only come from the leadership transfer.
	timing := clustertest.TestTiming()
	timing.RaftHeartbeat, timing.RaftElection, timing.RaftLeaderLease = 10*time.Second, 10*time.Second, 5*time.Second
	h := clustertest.New(t, clustertest.Options{Timing: &timing})
	startThree(t, h)
	leader := h.Leader(wait)
	var other *clustertest.Member
	for _, m := range h.Running() {
		if m.Name != leader.Name {
			other = m
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := leader.Node.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	h.Eventually(8*time.Second, "a new leader by transfer", func() error {
		if l := other.Node.Leader(); l == "" || l == leader.Name {
			return fmt.Errorf("leader %q", l)
		}
		return nil
	})
	t.Logf("new leader %s %v after the old leader began a graceful shutdown", other.Node.Leader(), time.Since(start).Round(time.Millisecond))
	// The leaver is still a member of the Raft configuration (it may come back).
	s, err := other.Node.Servers()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, sv := range s {
		found = found || sv.ID == leader.Name
	}
	if !found {
		t.Fatalf("graceful shutdown removed %s from the configuration", leader.Name)
	}
	// Gossip shows it left (a goodbye), not dead, with the time it left:
	// the dyno scheduler gives a leaver's dynos a grace period.
	h.Eventually(wait, "the others see the leaver as left", func() error {
		for _, m := range other.Node.Members() {
			if m.Name == leader.Name {
				if m.State != cluster.StateLeft || m.Since.IsZero() || m.Meta.Region == "" {
					return fmt.Errorf("%s is %s since %v (region %q)", m.Name, m.State, m.Since, m.Meta.Region)
				}
				return nil
			}
		}
		return fmt.Errorf("%s not listed", leader.Name)
	})
}

func TestGossipReconnectsAfterPartitionHeals(t *testing.T) {
	h := clustertest.New(t, clustertest.Options{})
	startThree(t, h)
	h.Leader(wait)
	h.Net.Isolate("n3")
	h.Eventually(wait, "n1 sees n3 dead", func() error {
		for _, m := range h.Get("n1").Node.Members() {
			if m.Name == "n3" && m.State == cluster.StateDead {
				return nil
			}
		}
		return errors.New("n3 not dead yet")
	})
	h.Net.Heal()
	h.Eventually(wait, "n1 and n3 see each other alive again", func() error {
		for _, pair := range [][2]string{{"n1", "n3"}, {"n3", "n1"}} {
			alive := false
			for _, m := range h.Get(pair[0]).Node.Members() {
				alive = alive || (m.Name == pair[1] && m.State == cluster.StateAlive)
			}
			if !alive {
				return fmt.Errorf("%s does not see %s alive", pair[0], pair[1])
			}
		}
		return nil
	})
}

// A leader serves linearizable reads only once an entry of its own term is
// committed: before that its commit index may miss writes a previous leader
// acknowledged (the drills caught stale reads right after a leader change).
func TestReadIndexWaitsForTheLeadersFirstCommit(t *testing.T) {
	h := clustertest.New(t, clustertest.Options{HoldTimeout: time.Second})
	startThree(t, h)
	leader := h.Leader(wait)
	h.Eventually(wait, "reads ready", func() error {
		_, err := leader.Node.ReadIndex(context.Background())
		return err
	})
	cluster.SetReadsReady(leader.Node, false)
	var follower *clustertest.Member
	for _, m := range h.Running() {
		if m.Name != leader.Name {
			follower = m
		}
	}
	for _, m := range []*clustertest.Member{leader, follower} {
		if _, err := m.Node.ReadIndex(context.Background()); err == nil {
			t.Fatalf("%s: ReadIndex answered before the leader's first commit of its term", m.Name)
		}
	}
	cluster.SetReadsReady(leader.Node, true)
	if _, err := follower.Node.ReadIndex(context.Background()); err != nil {
		t.Fatalf("after the first commit: %v", err)
	}
}

// A process that reaches the Raft port without the cluster's token (a dyno
// on the host network) cannot speak Raft; with the token the same request
// is answered (so the test can tell the difference).
func TestRaftPortRefusesConnectionsWithoutTheToken(t *testing.T) {
	h := clustertest.New(t, clustertest.Options{})
	startThree(t, h)
	leader := h.Leader(wait)
	target := raft.ServerAddress(net.JoinHostPort(h.Net.Host(leader.Name).IP().String(), strconv.Itoa(clustertest.RaftPort)))
	heartbeat := func(withToken bool, name string) error {
		sl, err := h.Net.Host(name).RaftStreamLayer(7000)
		if err != nil {
			t.Fatal(err)
		}
		var stream raft.StreamLayer = sl
		if withToken {
			sum := sha256.Sum256(append([]byte("slipway-raft/"), clustertest.EncryptKey...))
			stream = tokenStream{sl, sum[:]}
		}
		tr := raft.NewNetworkTransport(stream, 1, 5*time.Second, io.Discard)
		defer tr.Close()
		var resp raft.AppendEntriesResponse
		return tr.AppendEntries(raft.ServerID(leader.Name), target, &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("intruder"), Addr: []byte("intruder")}, Term: 0}, &resp)
	}
	if err := heartbeat(false, "intruder"); err == nil {
		t.Fatalf("the Raft port answered an RPC without the cluster's token")
	}
	if err := heartbeat(true, "insider"); err != nil {
		t.Fatalf("with the token the same RPC failed: %v", err)
	}
	if err := h.Set(context.Background(), leader.Name, "still", "works"); err != nil {
		t.Fatalf("cluster broken after the refused connection: %v", err)
	}
}

type tokenStream struct {
	raft.StreamLayer
	token []byte
}

func (s tokenStream) Dial(a raft.ServerAddress, d time.Duration) (net.Conn, error) {
	c, err := s.StreamLayer.Dial(a, d)
	if err == nil {
		_, err = c.Write(s.token)
	}
	return c, err
}
