package ledger

import (
	"context"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// PutBlob durably stores value under key in the ledger file's side bucket,
// in a group-commit transaction like an append. Projections keep their
// checkpoints here so that a checkpoint and the log it summarizes live (and
// are backed up) together. Blobs are not part of the hash chain. A key
// longer than MaxNameLen is refused with ErrNameTooLong.
func (s *Store) PutBlob(ctx context.Context, key string, value []byte) error {
	if key == "" {
		return fmt.Errorf("put blob: empty key")
	}
	if err := checkName("blob key", key); err != nil {
		return fmt.Errorf("put blob: %w", err)
	}
	_, err := s.do(ctx, &appendReq{put: &kvPut{bucket: bucketBlobs, key: []byte(key), value: append([]byte(nil), value...)}})
	if err != nil {
		return fmt.Errorf("put blob %q: %w", key, err)
	}
	return nil
}

// GetBlob returns a copy of the blob stored under key, or nil if none is.
func (s *Store) GetBlob(key string) ([]byte, error) {
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketBlobs).Get([]byte(key)); v != nil {
			out = append([]byte{}, v...)
		}
		return nil
	})
	return out, err
}

// LastBlob returns the blob with the greatest key that starts with prefix
// and is at most upTo (byte order), or an empty key when there is none.
// Projections find the nearest snapshot at or before a sequence with it.
func (s *Store) LastBlob(prefix, upTo string) (string, []byte, error) {
	var key string
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketBlobs).Cursor()
		k, v := c.Seek([]byte(upTo))
		switch {
		case k == nil:
			k, v = c.Last()
		case string(k) > upTo:
			k, v = c.Prev()
		}
		if k != nil && strings.HasPrefix(string(k), prefix) {
			key, out = string(k), append([]byte{}, v...)
		}
		return nil
	})
	return key, out, err
}

// Blobs calls fn with every blob whose key starts with prefix, in key
// order. The values are copies; fn runs outside the read transaction.
func (s *Store) Blobs(prefix string, fn func(key string, value []byte) error) error {
	type blob struct {
		key   string
		value []byte
	}
	var all []blob
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketBlobs).Cursor()
		for k, v := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, v = c.Next() {
			all = append(all, blob{string(k), append([]byte(nil), v...)})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, b := range all {
		if err := fn(b.key, b.value); err != nil {
			return err
		}
	}
	return nil
}
