package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sessionledger/sessionledger/hub/hubpb"
)

func newBackup(g *globals) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "backup --out FILE",
		Short: "Write a hot backup of hubd's ledger to FILE (admin role)",
		Long: `backup streams a consistent copy of the running hubd's ledger (one read
transaction) into FILE, which appears whole or not at all. auditq --db reads
it. Needs the admin role. --timeout bounds the whole copy.`,
		Example: `  hubctl backup --out ledger-$(date +%F).db --timeout 10m`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{errors.New("backup: --out is required")}
			}
			admin, ctx, done, err := g.admin()
			if err != nil {
				return err
			}
			defer done()
			st, err := admin.Backup(ctx, &hubpb.BackupRequest{})
			if err != nil {
				return callError("backup", err)
			}
			tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
			if err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			defer os.Remove(tmp.Name())
			var n int64
			var seq uint64
			for {
				c, err := st.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					tmp.Close()
					return callError("backup", err)
				}
				w, err := tmp.Write(c.GetData())
				n += int64(w)
				if err != nil {
					tmp.Close()
					return fmt.Errorf("backup: %w", err)
				}
				if c.GetSeq() != 0 {
					seq = c.GetSeq()
				}
			}
			if seq == 0 {
				tmp.Close()
				return errors.New("backup: the stream ended before the backup was complete")
			}
			if err := errors.Join(tmp.Sync(), tmp.Close()); err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			if err := os.Rename(tmp.Name(), out); err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backed up %d bytes, up to seq %d, to %s\n", n, seq, out)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "file to write")
	return c
}
