package main

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sessionledger/sessionledger/audit/auditpb"
	"github.com/sessionledger/sessionledger/ledger/signkey"
)

func newKey(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "key",
		Short: "Print the verifier key of hubd's signed checkpoints",
		Long: `key prints the verifier key that checks hubd's signed checkpoints (auditq
verify --key, check-proof --key): from DATA/checkpoint.key when the data
directory is at hand, else from the running hubd's Audit API. Copy it off the
host when hubd is first set up: a key read later from a host that may have
been tampered with proves nothing (docs/verification.md).`,
		Example: `  hubctl key --data /srv/hubd/data > hubd.vkey
  hubctl key --addr hub.internal:7070`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := filepath.Join(g.dataDir, signkey.KeyFile)
			vkey, err := signkey.VerifierKey(path)
			if err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), vkey)
				return nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("key: %w", err)
			}
			conn, err := g.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel, err := g.adminCtx()
			if err != nil {
				return fmt.Errorf("key: no %s, and %w", path, err)
			}
			defer cancel()
			sc, err := auditpb.NewAuditClient(conn).Checkpoint(ctx, &auditpb.CheckpointRequest{})
			if err == nil && sc.GetVerifierKey() == "" {
				err = errors.New("the hub did not say its verifier key")
			}
			if err != nil {
				return fmt.Errorf("key: no %s, and asking hubd at %s: %w", path, g.addr, err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), sc.GetVerifierKey())
			return nil
		},
	}
}
