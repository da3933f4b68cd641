package ledger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	berrors "go.etcd.io/bbolt/errors"
)

// BackupTo writes a consistent copy of the whole ledger file to w while
// appends go on, and returns the seq of the last record in the copy: the
// head when the copy began, so the copy holds exactly the durable log.
//
// The copy is one bbolt read transaction (Tx.WriteTo), held for the whole
// write: that is what makes it consistent, and it has a cost. While it is
// open, a commit that must grow bbolt's memory map waits for it to end, and
// every append waits behind that commit (Options.InitialMmapSize makes
// remaps rare). Keep w fast (a local file, not a slow network peer), and
// cancel ctx to give up: BackupTo checks it before every write to w.
// A store whose appends failed (Err) is not backed up: its file may hold a
// commit that never became durable.
func (s *Store) BackupTo(ctx context.Context, w io.Writer) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.Closed() {
		return 0, ErrClosed
	}
	// Begin between commits, so the copy holds exactly the head (a
	// read-only store has no writer, and nothing holds the gate).
	s.commitGate.RLock()
	s.mu.RLock()
	last, failed := s.head.Seq, s.failed
	s.mu.RUnlock()
	if failed != nil {
		s.commitGate.RUnlock()
		return 0, fmt.Errorf("backup refused: %w", failed)
	}
	tx, err := s.db.Begin(false)
	s.commitGate.RUnlock()
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return 0, ErrClosed
	}
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.WriteTo(ctxWriter{ctx, w}); err != nil {
		return 0, err
	}
	return last, nil
}

// ctxWriter fails writes once ctx is done, which ends Tx.WriteTo.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
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
	last, err := s.BackupTo(ctx, f)
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
