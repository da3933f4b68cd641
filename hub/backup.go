package hub

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"google.golang.org/grpc"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
)

// backupSource is the optional capability of a History that Admin.Backup
// needs: a consistent copy of the ledger file (*ledger.Store has it) and
// where that file is, so the copy is staged beside it.
type backupSource interface {
	BackupTo(ctx context.Context, w io.Writer) (uint64, error)
	Path() string
}

var _ backupSource = (*ledger.Store)(nil)

// backupChunk is the size of the data messages of a Backup stream.
const backupChunk = 256 << 10

// Backup streams a consistent hot copy of the ledger file. The copy is
// first written to a temporary file beside the ledger (one short read
// transaction at disk speed: a caller that reads slowly must not hold a
// read transaction open, which stalls appends whenever bbolt grows its
// memory map), then sent from there, and removed. One backup runs at a
// time; another waits for it.
func (a *admin) Backup(_ *hubpb.BackupRequest, stream grpc.ServerStreamingServer[hubpb.BackupChunk]) error {
	s, ctx := a.s, stream.Context()
	src, ok := s.hist.(backupSource)
	if !ok {
		return ErrNoBackup
	}
	select {
	case s.backupSem <- struct{}{}:
		defer func() { <-s.backupSem }()
	case <-ctx.Done():
		return ctx.Err()
	}
	// A checkpoint near the head first, when the projection can write one
	// on request: a hubd restored from the copy then replays little. A
	// failure only makes the copy's checkpoint older.
	if cp, ok := s.proj.(interface{ Checkpoint(context.Context) error }); ok {
		if err := cp.Checkpoint(ctx); err != nil {
			s.log.Warn("backup: could not write a fresh projection checkpoint first; the copy has the last one", "err", err)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(src.Path()), ".admin-backup-*.db")
	if err != nil {
		return fmt.Errorf("backup: stage the copy: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	last, err := src.BackupTo(ctx, f)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	info := &hubpb.BackupInfo{HeadSeq: last}
	if last > 0 {
		err := s.hist.Scan(ctx, last, last, func(r *ledger.Record) error {
			info.HeadHash, info.HeadUnixNano = append([]byte(nil), r.Hash[:]...), r.Time.UnixNano()
			return nil
		})
		if err != nil {
			return fmt.Errorf("backup: read the head of the copy: %w", err)
		}
	}
	if err := stream.Send(&hubpb.BackupChunk{Chunk: &hubpb.BackupChunk_Info{Info: info}, Seq: last}); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	h := sha256.New()
	var size uint64
	for {
		// A fresh buffer per message: a sent message must not change
		// (grpc's SendMsg contract).
		buf := make([]byte, backupChunk)
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			h.Write(buf[:n])
			size += uint64(n)
			if serr := stream.Send(&hubpb.BackupChunk{Chunk: &hubpb.BackupChunk_Data{Data: buf[:n]}}); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("backup: read the staged copy: %w", err)
		}
	}
	info.Size, info.Sha256 = size, h.Sum(nil)
	s.log.Info("backup sent", "actor", ActorFrom(ctx), "head", last, "bytes", size)
	return stream.Send(&hubpb.BackupChunk{Chunk: &hubpb.BackupChunk_Info{Info: info}, Seq: last})
}
