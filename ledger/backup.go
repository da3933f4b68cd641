package ledger

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// BackupTo writes a consistent copy of the whole ledger file to w while
// appends go on (a bbolt read transaction is a snapshot), and returns the
// seq of the last record in the copy.
func (s *Store) BackupTo(w io.Writer) (uint64, error) {
	var last uint64
	err := s.view(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLog).Cursor().Last(); len(k) == 8 {
			last = binary.BigEndian.Uint64(k)
		}
		_, err := tx.WriteTo(w)
		return err
	})
	return last, err
}

// Backup writes a hot backup to path atomically: a temporary file in the same
// folder is written, fsync'd and renamed over path, so path is always either
// the old backup or a complete new one. It returns the seq of the last
// record in the backup. The backup is itself a ledger file: Open it
// read-only, or with auditq --db.
func (s *Store) Backup(ctx context.Context, path string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".ledger-backup-*")
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	last, err := s.BackupTo(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return 0, fmt.Errorf("backup to %s: %w", path, err)
	}
	return last, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
