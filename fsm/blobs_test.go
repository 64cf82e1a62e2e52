package fsm

import (
	"strings"
	"testing"
)

func TestBlobDeleteIfUpdatedAt(t *testing.T) {
	h := newHarness(t)
	dg := "sha256:" + strings.Repeat("ab", 32)
	var b Blob
	h.ok(CmdBlobReplicas, BlobReplicas{Digest: dg, Size: 3, Kind: "slug", Add: []string{"n1"}}, &b)
	seen := b.UpdatedAt
	// A Put of the same content refreshes the record...
	h.ok(CmdBlobReplicas, BlobReplicas{Digest: dg, Add: []string{"n1"}}, &b)
	if !b.UpdatedAt.After(seen) {
		t.Fatalf("updated_at not refreshed: %v then %v", seen, b.UpdatedAt)
	}
	// ...so a collector that saw the old record does not delete it.
	h.fails(CodeConflict, CmdBlobDelete, BlobDelete{Digest: dg, IfUpdatedAt: &seen})
	if _, ok := h.f.Snap().Blob(dg); !ok {
		t.Fatal("blob deleted despite the changed record")
	}
	cur := b.UpdatedAt
	h.ok(CmdBlobDelete, BlobDelete{Digest: dg, IfUpdatedAt: &cur}, nil)
	if _, ok := h.f.Snap().Blob(dg); ok {
		t.Fatal("blob still there")
	}
}
