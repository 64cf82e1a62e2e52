package blob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/fsm"
)

// References returns the digest of every blob the state refers to; the
// garbage collector deletes the others once they have been unreferenced
// for the grace period. Each kind of record that points at blobs adds its
// loop here:
//
//   - slugs: the tarball of every slug (released or not; slugs go when
//     their app is deleted).
//   - deploys (fsm/builds.go): each app's git repository and build cache,
//     uploaded sources (until they expire), the source of every pending
//     build and the output of every build on record, and the slug a
//     dyno runs instead of a release's (the builder of a build dyno).
//
// Config.References replaces this function (tests).
func References(snap *fsm.Snap) map[string]bool {
	refs := map[string]bool{}
	add := func(digest string) {
		if digest != "" {
			refs[digest] = true
		}
	}
	for _, a := range snap.Apps() {
		for _, sl := range snap.Slugs(a.ID) {
			add(sl.BlobDigest)
		}
	}
	for _, r := range snap.Repos() {
		add(r.Digest)
		add(r.CacheDigest)
	}
	for _, s := range snap.Sources() {
		add(s.Digest)
	}
	for _, b := range snap.AllBuilds() {
		if b.Status == fsm.BuildPending {
			add(b.SourceDigest)
		}
		add(b.OutputDigest)
	}
	for _, d := range snap.AllDynos() {
		add(d.SlugDigest)
	}
	return refs
}

// lead runs on the region leader: after RepairDelay, it repairs replicas
// and collects garbage every interval until leadership is lost.
func (s *Store) lead(ctx context.Context) {
	s.gcMu.Lock()
	s.unrefSince = map[string]time.Time{}
	s.gcMu.Unlock()
	select {
	case <-ctx.Done():
		return
	case <-time.After(s.cfg.RepairDelay):
	}
	repair := time.NewTicker(s.cfg.RepairInterval)
	defer repair.Stop()
	gc := time.NewTicker(s.cfg.GCInterval)
	defer gc.Stop()
	s.Repair(ctx)
	s.CollectGarbage(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-repair.C:
			s.Repair(ctx)
		case <-gc.C:
			s.CollectGarbage(ctx)
		}
	}
}

// CollectGarbage forgets (blob.delete) the blobs nothing has referred to
// for the grace period, as seen by this node (the leader): a blob must be
// unreferenced at every pass for GCGrace, and its record unchanged for as
// long (a Put of the same content refreshes it). It returns the digests
// deleted. Nodes then remove their files (CollectLocal).
func (s *Store) CollectGarbage(ctx context.Context) []string {
	snap := s.st.Snap()
	refs := s.cfg.References(snap)
	now := s.cfg.Clock.Now()
	var del []*fsm.Blob
	s.gcMu.Lock()
	seen := map[string]bool{}
	for _, b := range snap.Blobs() {
		seen[b.Digest] = true
		if refs[b.Digest] {
			delete(s.unrefSince, b.Digest)
			continue
		}
		since, ok := s.unrefSince[b.Digest]
		if !ok {
			s.unrefSince[b.Digest] = now
			continue
		}
		if now.Sub(since) >= s.cfg.GCGrace && now.Sub(b.UpdatedAt) >= s.cfg.GCGrace {
			del = append(del, b)
		}
	}
	for d := range s.unrefSince {
		if !seen[d] {
			delete(s.unrefSince, d)
		}
	}
	s.gcMu.Unlock()
	var out []string
	for _, b := range del {
		at := b.UpdatedAt
		_, err := s.submit(ctx, fsm.CmdBlobDelete, fsm.BlobDelete{Digest: b.Digest, IfUpdatedAt: &at})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("blob: garbage collection", "digest", b.Digest, "err", err)
			}
			continue
		}
		s.log.Info("blob: deleted unreferenced blob", "digest", b.Digest, "kind", b.Kind, "size", b.Size, "grace", s.cfg.GCGrace)
		out = append(out, b.Digest)
	}
	return out
}

// CollectLocal deletes this node's files of blobs the state does not list
// on this node (deleted blobs, copies whose recording failed, copies the
// repair replaced while this node was away), and temporary files, once
// they are older than the grace period, so uploads and copies in flight are
// left alone. It returns the digests removed.
func (s *Store) CollectLocal() ([]string, error) {
	local, err := s.LocalBlobs()
	if err != nil {
		return nil, err
	}
	now := s.cfg.Clock.Now()
	snap := s.st.Snap()
	var out []string
	var errs []error
	for _, d := range local {
		if b, ok := snap.Blob(d); ok && slices.Contains(b.Replicas, s.c.Name()) {
			continue
		}
		removed, err := s.removeIfStale(d, now)
		if err != nil {
			errs = append(errs, err)
		}
		if removed {
			out = append(out, d)
		}
	}
	tmps, err := os.ReadDir(s.tmp)
	if err != nil {
		errs = append(errs, err)
	}
	for _, t := range tmps {
		if info, err := t.Info(); err == nil && now.Sub(info.ModTime()) >= s.cfg.GCGrace {
			if err := os.Remove(filepath.Join(s.tmp, t.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if len(out) > 0 {
		s.log.Info("blob: removed local copies the state does not list here", "count", len(out))
	}
	return out, errors.Join(errs...)
}

func (s *Store) removeIfStale(digest string, now time.Time) (bool, error) {
	unlock := s.locks.lock(digest)
	defer unlock()
	// Look again under the lock: a Put may have recorded it meanwhile.
	if b, ok := s.st.Snap().Blob(digest); ok && slices.Contains(b.Replicas, s.c.Name()) {
		return false, nil
	}
	p := s.path(digest)
	info, err := os.Stat(p)
	if err != nil {
		return false, nil
	}
	if now.Sub(info.ModTime()) < s.cfg.GCGrace {
		return false, nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("removing %s: %w", p, err)
	}
	return true, nil
}

// Repair brings every blob's replicas back to the goal: a blob whose live
// copies (on nodes gossip sees alive) cover too few zones or nodes is copied
// from a live copy to another node, and the replicas that are not alive are
// then dropped from its record. It returns how many blobs it changed.
func (s *Store) Repair(ctx context.Context) int {
	alive := s.aliveMembers()
	g := goalFor(alive, s.cfg.Zones, s.cfg.Copies)
	changed := 0
	for _, b := range s.st.Snap().Blobs() {
		if ctx.Err() != nil {
			break
		}
		if s.repairOne(ctx, b, alive, g) {
			changed++
		}
	}
	return changed
}

func (s *Store) repairOne(ctx context.Context, b *fsm.Blob, alive map[string]cluster.Member, g goal) bool {
	live := map[string]cluster.Member{}
	var gone, sources []string
	for _, r := range b.Replicas {
		if m, ok := alive[r]; ok {
			live[r] = m
			sources = append(sources, r)
		} else {
			gone = append(gone, r)
		}
	}
	if len(live) == 0 {
		if len(b.Replicas) > 0 {
			s.log.Error("blob: no live node holds a copy; waiting for one to come back", "digest", b.Digest, "replicas", b.Replicas)
		}
		return false
	}
	var added []string
	failed := map[string]bool{}
	for !g.met(live) {
		t, ok := nextTarget(b.Digest, alive, live, failed, g)
		if !ok {
			break
		}
		if err := s.copyTo(ctx, t, b.Digest, sources); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("blob: repair copy failed", "digest", b.Digest, "to", t.Name, "err", err)
			}
			failed[t.Name] = true
			continue
		}
		live[t.Name] = t
		added = append(added, t.Name)
	}
	var remove []string
	if g.met(live) {
		remove = gone
	}
	if len(added) == 0 && len(remove) == 0 {
		return false
	}
	if _, err := s.submit(ctx, fsm.CmdBlobReplicas, fsm.BlobReplicas{Digest: b.Digest, Add: added, Remove: remove}); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("blob: recording repaired replicas", "digest", b.Digest, "err", err)
		}
		return false
	}
	s.log.Info("blob: re-replicated", "digest", b.Digest, "added", added, "removed", remove, "zones", zonesOf(live))
	return true
}

// copyTo puts a copy of a blob on node t, from one of sources.
func (s *Store) copyTo(ctx context.Context, t cluster.Member, digest string, sources []string) error {
	if t.Name == s.c.Name() {
		for _, src := range sources {
			m, ok := s.aliveMembers()[src]
			if !ok {
				continue
			}
			body, size, err := s.get(ctx, m, digest)
			if err != nil {
				continue
			}
			err = s.receive(body, digest, size)
			body.Close()
			if err == nil {
				return nil
			}
		}
		return fmt.Errorf("%w: no source could send %s", ErrNotFound, digest)
	}
	return s.fetchTo(ctx, t, digest, sources)
}
