package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/metadata"

	"github.com/sessionledger/sessionledger/hub/hubpb"
)

func newBackup(g *globals) *cobra.Command {
	var (
		out   string
		force bool
	)
	c := &cobra.Command{
		Use:   "backup --out FILE",
		Short: "Take a consistent hot backup of hubd's ledger (Admin.Backup; admin role)",
		Long: `backup asks the running hubd for a consistent copy of its ledger file — the
log, its indexes, blobs and the projection checkpoint, exactly as of one
moment — while it keeps serving, and writes it to --out. The copy is
checked against the size and SHA-256 hubd sends at the end, written to a
temporary file beside --out, synced, and only then renamed into place
(mode 0600), so --out is either a whole backup or untouched.

Read it with auditq --db FILE; restore it as docs/operations.md says
(stop hubd, replace DATA/ledger.db, start, verify). The call has no time
limit unless --timeout is given; Ctrl-C stops it and leaves nothing.`,
		Example: `  hubctl backup --out /backups/ledger-$(date +%F).db
  auditq --db /backups/ledger-2026-12-06.db verify`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{errors.New("backup: --out is required")}
			}
			if _, err := os.Stat(out); err == nil && !force {
				return usageError{fmt.Errorf("backup: %s exists; give another --out, or --force to replace it", out)}
			}
			conn, err := g.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel, err := g.adminCtx()
			if err != nil {
				return err
			}
			defer cancel()
			if !cmd.Flags().Changed("timeout") {
				// A large ledger takes longer than the default per-call
				// limit: keep the token, drop the deadline.
				md, _ := metadata.FromOutgoingContext(ctx)
				var cancel2 context.CancelFunc
				ctx, cancel2 = context.WithCancel(metadata.NewOutgoingContext(context.Background(), md))
				defer cancel2()
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			info, err := receiveBackup(ctx, hubpb.NewAdminClient(conn), out)
			if err != nil {
				return err
			}
			head := "an empty log"
			if info.GetHeadSeq() > 0 {
				head = fmt.Sprintf("head seq %d, hash %s, at %s", info.GetHeadSeq(), hex.EncodeToString(info.GetHeadHash()),
					time.Unix(0, info.GetHeadUnixNano()).UTC().Format(time.RFC3339Nano))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup written to %s: %d bytes, %s, sha256 %s\n", out, info.GetSize(), head, hex.EncodeToString(info.GetSha256()))
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "file to write the backup to")
	c.Flags().BoolVar(&force, "force", false, "replace --out if it exists")
	return c
}

// receiveBackup reads a Backup stream into a temporary file beside out,
// checks it against the final BackupInfo, syncs it and renames it to out.
func receiveBackup(ctx context.Context, admin hubpb.AdminClient, out string) (*hubpb.BackupInfo, error) {
	stream, err := admin.Backup(ctx, &hubpb.BackupRequest{})
	if err != nil {
		return nil, callError("backup", err)
	}
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".part-*")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	defer f.Close()
	h := sha256.New()
	var first, last *hubpb.BackupInfo
	var size uint64
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, callError("backup", err)
		}
		switch {
		case m.GetInfo() != nil && first == nil:
			first = m.GetInfo()
		case m.GetInfo() != nil:
			last = m.GetInfo()
		case first == nil || last != nil:
			return nil, errors.New("backup: the hub sent data outside the stream's frame; nothing was written")
		default:
			h.Write(m.GetData())
			size += uint64(len(m.GetData()))
			if _, err := f.Write(m.GetData()); err != nil {
				return nil, fmt.Errorf("backup: %w", err)
			}
		}
	}
	switch {
	case last == nil:
		return nil, fmt.Errorf("backup: the stream ended after %d bytes without the hub's closing summary; nothing was written", size)
	case last.GetSize() != size || !bytes.Equal(last.GetSha256(), h.Sum(nil)):
		return nil, fmt.Errorf("backup: received %d bytes with sha256 %x; the hub sent %d bytes with sha256 %x; nothing was written", size, h.Sum(nil), last.GetSize(), last.GetSha256())
	}
	if err := f.Chmod(0o600); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if d, err := os.Open(filepath.Dir(out)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return last, nil
}
