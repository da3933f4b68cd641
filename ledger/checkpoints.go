package ledger

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Signed checkpoints are kept in the ledger file too (bucket checkpoints:
// tree size, 8-byte big-endian → root, 32 bytes, then the signed note as
// given). The ledger does not read the note: it stores it beside the tree
// head it signs, so that Verify's cross-checks can compare every stored
// checkpoint with the log without knowing the key. Kept in the file, they
// are evidence only against an editor who forgets them: the copies that
// count are the ones kept off the host (docs/verification.md).

// StoredCheckpoint is a signed checkpoint kept in the ledger file: the
// tree head it signs and the signed note.
type StoredCheckpoint struct {
	TreeHead
	Signed []byte
}

// PutCheckpoint durably stores signed, a signed checkpoint of th, in the
// ledger file, in a group-commit transaction like an append. th must be the
// log's tree at th.Size (the root is checked against the stored tree).
func (s *Store) PutCheckpoint(ctx context.Context, th TreeHead, signed []byte) error {
	root, err := s.TreeRoot(th.Size)
	if err != nil {
		return fmt.Errorf("put checkpoint: %w", err)
	}
	if root != th.Root {
		return fmt.Errorf("put checkpoint: the tree at size %d has root %x, not %x", th.Size, root, th.Root)
	}
	value := make([]byte, 0, hashSize+len(signed))
	value = append(append(value, th.Root[:]...), signed...)
	if _, err := s.do(ctx, &appendReq{put: &kvPut{bucket: bucketCheckpoints, key: seqKey(th.Size), value: value}}); err != nil {
		return fmt.Errorf("put checkpoint: %w", err)
	}
	return nil
}

// LastCheckpoint returns the stored checkpoint of the largest tree, and
// false when none is stored.
func (s *Store) LastCheckpoint() (StoredCheckpoint, bool, error) {
	if err := s.needTree(); err != nil {
		return StoredCheckpoint{}, false, err
	}
	var cp StoredCheckpoint
	found := false
	err := s.view(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketCheckpoints).Cursor().Last()
		if k == nil {
			return nil
		}
		var err error
		cp, err = decodeCheckpoint(k, v)
		found = err == nil
		return err
	})
	return cp, found, err
}

// Checkpoints calls fn with every stored checkpoint, smallest tree first.
func (s *Store) Checkpoints(fn func(StoredCheckpoint) error) error {
	if s.format < 3 {
		return ErrNoTree
	}
	var all []StoredCheckpoint
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCheckpoints).ForEach(func(k, v []byte) error {
			cp, err := decodeCheckpoint(k, v)
			if err != nil {
				return err
			}
			all = append(all, cp)
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, cp := range all {
		if err := fn(cp); err != nil {
			return err
		}
	}
	return nil
}

func decodeCheckpoint(k, v []byte) (StoredCheckpoint, error) {
	if len(k) != 8 || len(v) < hashSize {
		return StoredCheckpoint{}, fmt.Errorf("%w: malformed stored checkpoint (key %x)", ErrCorrupt, k)
	}
	cp := StoredCheckpoint{TreeHead: TreeHead{Size: binary.BigEndian.Uint64(k)}, Signed: append([]byte(nil), v[hashSize:]...)}
	copy(cp.Root[:], v)
	return cp, nil
}
