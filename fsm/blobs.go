package fsm

import (
	"regexp"
	"sort"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Blob is a content-addressed object (a slug, a git repository, a build
// cache, a source tarball) and the nodes that hold a copy.
type Blob struct {
	Digest    string    `json:"digest"` // "sha256:<64 hex>"
	Size      int64     `json:"size"`
	Kind      string    `json:"kind,omitempty"` // slug, repo, cache, source
	Replicas  []string  `json:"replicas"`       // node names, sorted
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

const tBlobs = "blobs"

func blobTables() map[string]table {
	return map[string]table{
		tBlobs: {decode: decodeAs[Blob], schema: &memdb.TableSchema{Indexes: map[string]*memdb.IndexSchema{
			indexID: idx(indexID, true, false, str("Digest")),
		}}},
	}
}

// Blob commands.
const (
	CmdBlobReplicas = "blob.replicas"
	CmdBlobDelete   = "blob.delete"
)

func blobHandler(typ string) handler {
	switch typ {
	case CmdBlobReplicas:
		return applyBlobReplicas
	case CmdBlobDelete:
		return applyBlobDelete
	}
	return nil
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// ValidDigest checks a blob digest.
func ValidDigest(d string) *Error {
	if !digestRE.MatchString(d) {
		return invalid("Digest %q is not of the form sha256:<64 hex digits>.", d)
	}
	return nil
}

// BlobReplicas records that nodes gained (Add) or lost (Remove) a copy of a
// blob; the first Add creates the record.
type BlobReplicas struct {
	Digest string   `json:"digest"`
	Size   int64    `json:"size"`
	Kind   string   `json:"kind,omitempty"`
	Add    []string `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

func applyBlobReplicas(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[BlobReplicas](c)
	if e != nil {
		return nil, e
	}
	if e := ValidDigest(p.Digest); e != nil {
		return nil, e
	}
	b := &Blob{Digest: p.Digest, Size: p.Size, Kind: p.Kind, CreatedAt: c.At}
	if old, ok := txFirst[Blob](tx, tBlobs, indexID, p.Digest); ok {
		cp := *old
		b = &cp
		if p.Size != 0 && p.Size != old.Size {
			return nil, invalid("Blob %s has size %d, not %d.", p.Digest, old.Size, p.Size)
		}
	} else if len(p.Add) == 0 {
		return nil, notFound("blob")
	}
	set := map[string]bool{}
	for _, r := range b.Replicas {
		set[r] = true
	}
	for _, r := range p.Add {
		set[r] = true
	}
	for _, r := range p.Remove {
		delete(set, r)
	}
	b.Replicas = b.Replicas[:0:0]
	for r := range set {
		b.Replicas = append(b.Replicas, r)
	}
	sort.Strings(b.Replicas)
	if b.Kind == "" {
		b.Kind = p.Kind
	}
	b.UpdatedAt = c.At
	if e := insert(tx, tBlobs, b); e != nil {
		return nil, e
	}
	return b, nil
}

// BlobDelete forgets a blob (garbage collection); nodes then delete their
// copies. With IfUpdatedAt, the blob is only forgotten if its record has not
// changed since (a Put of the same content refreshes it): otherwise the
// command fails with conflict.
type BlobDelete struct {
	Digest      string     `json:"digest"`
	IfUpdatedAt *time.Time `json:"if_updated_at,omitempty"`
}

func applyBlobDelete(_ *FSM, tx *memdb.Txn, c *Command) (any, *Error) {
	p, e := decodeData[BlobDelete](c)
	if e != nil {
		return nil, e
	}
	b, ok := txFirst[Blob](tx, tBlobs, indexID, p.Digest)
	if !ok {
		return nil, notFound("blob")
	}
	if p.IfUpdatedAt != nil && !p.IfUpdatedAt.Equal(b.UpdatedAt) {
		return nil, Errorf(CodeConflict, "Blob %s changed since %s; not deleted.", p.Digest, p.IfUpdatedAt.Format(time.RFC3339Nano))
	}
	if err := tx.Delete(tBlobs, b); err != nil {
		return nil, Errorf("internal", "deleting blob: %v", err)
	}
	return b, nil
}

// Blob finds a blob record.
func (s *Snap) Blob(digest string) (*Blob, bool) { return first[Blob](s, tBlobs, indexID, digest) }

// Blobs lists every blob record.
func (s *Snap) Blobs() []*Blob { return all[Blob](s, tBlobs, indexID) }
