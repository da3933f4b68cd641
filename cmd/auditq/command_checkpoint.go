package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/oklog/ulid/v2"
	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/checkpoint"
	"github.com/sessionledger/sessionledger/ledger/signkey"
)

// checkpointFile is a signed checkpoint read from a file.
type checkpointFile struct {
	name string
	note []byte
}

// readCheckpoints reads the files named; a directory stands for the
// checkpoint files in it (as hubd --signed-checkpoint-dir writes them).
func readCheckpoints(paths []string) ([]checkpointFile, error) {
	var out []checkpointFile
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, usagef("--checkpoint %s: %v", p, err)
		}
		files := []string{p}
		if fi.IsDir() {
			if files, err = filepath.Glob(filepath.Join(p, "checkpoint-*")); err != nil {
				return nil, err
			}
			sort.Strings(files)
			if len(files) == 0 {
				return nil, usagef("--checkpoint %s: a directory with no checkpoint-* files", p)
			}
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, usagef("--checkpoint %s: %v", f, err)
			}
			if _, err := checkpoint.Parse(b); err != nil {
				return nil, usagef("%s: %v", f, err)
			}
			out = append(out, checkpointFile{name: f, note: b})
		}
	}
	return out, nil
}

// keySource says where the verifier key came from.
type keySource struct {
	vkey, from string
	// onHost: the key came from the host under audit, not from the user.
	onHost bool
}

// verifierKey is the key for checking checkpoint signatures: --key (a key
// or a file holding one), else the one in DATA/checkpoint.key, else the
// one the hub reports. The last two come from the host under audit, and
// the command says so.
func (a *app) verifierKey(ctx context.Context, flag string, src source) (keySource, error) {
	if flag != "" {
		k := strings.TrimSpace(flag)
		if b, err := os.ReadFile(flag); err == nil {
			k = strings.TrimSpace(string(b))
		}
		if strings.HasPrefix(k, "PRIVATE+KEY") {
			return keySource{}, usagef("--key is a private signing key: give the verifier key (auditq key)")
		}
		if _, err := note.NewVerifier(k); err != nil {
			return keySource{}, usagef("--key %q is not a verifier key (%v): give the output of auditq key or hubctl key, or a file holding it", flag, err)
		}
		return keySource{vkey: k, from: "--key"}, nil
	}
	path := filepath.Join(a.data, signkey.KeyFile)
	if k, err := signkey.VerifierKey(path); err == nil {
		return keySource{vkey: k, from: path, onHost: true}, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return keySource{}, err
	}
	if src != nil {
		sc, err := src.Checkpoint(ctx)
		if err == nil && sc.VerifierKey != "" {
			return keySource{vkey: sc.VerifierKey, from: "the hub", onHost: true}, nil
		}
	}
	return keySource{}, usagef("no verifier key: give --key with the hub's verifier key (auditq key or hubctl key print it; keep a copy off the host)")
}

// warnKey says, once, that the key came from the host under audit.
func (a *app) warnKey(k keySource) {
	if k.onHost {
		fmt.Fprintf(a.stderr, "auditq: checking signatures with the verifier key from %s, on the host under audit: pass --key with a copy kept elsewhere\n", k.from)
	}
}

func (a *app) checkpointCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "checkpoint [-o FILE]",
		Short: "The newest signed checkpoint of the log's Merkle tree (a C2SP tlog-checkpoint note)",
		Long: `checkpoint prints the newest signed checkpoint hubd wrote: the log id, the tree
size and root, signed with hubd's key. Saved in a file and kept off the host,
it is what verify --checkpoint checks a later copy of the log against
(docs/verification.md). --json shows its fields too.`,
		Example: `  auditq checkpoint -o cp-$(date +%F).txt
  auditq --addr hub:7070 checkpoint --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, closeFn, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			sc, err := src.Checkpoint(cmd.Context())
			if err != nil {
				return err
			}
			if out != "" {
				if err := os.WriteFile(out, sc.Note, 0o644); err != nil {
					return err
				}
				if a.json {
					return a.printCheckpointJSON(sc)
				}
				return nil
			}
			if a.json {
				return a.printCheckpointJSON(sc)
			}
			_, err = a.stdout.Write(sc.Note)
			return err
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the checkpoint to FILE")
	return cmd
}

type checkpointJSON struct {
	Origin   string `json:"origin"`
	Size     uint64 `json:"size"`
	Root     string `json:"root"`
	Note     string `json:"note"`
	Verifier string `json:"verifier_key,omitempty"`
}

func (a *app) printCheckpointJSON(sc audit.SignedCheckpoint) error {
	w := bufio.NewWriter(a.stdout)
	defer w.Flush()
	return jsonLine(w, checkpointJSON{Origin: sc.Origin, Size: sc.Size, Root: base64.StdEncoding.EncodeToString(sc.Root[:]), Note: string(sc.Note), Verifier: sc.VerifierKey})
}

func (a *app) keyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "key",
		Short: "Print the verifier key of hubd's checkpoint signing key",
		Long: `key prints the verifier key that checks hubd's signed checkpoints (verify
--key, check-proof --key, consistency --key): from DATA/checkpoint.key when
the data folder is at hand (--data), else from the running hubd. Copy it off
the host once, when hubd is first set up: a key read later from a host that
may have been tampered with proves nothing.`,
		Example: `  auditq --data /srv/hubd/data key > hubd.vkey
  auditq --addr hub:7070 key`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := a.verifierKey(cmd.Context(), "", nil)
			if err != nil {
				src, closeFn, oerr := a.open(cmd.Context())
				if oerr != nil {
					return oerr
				}
				defer closeFn()
				sc, cerr := src.Checkpoint(cmd.Context())
				if cerr != nil || sc.VerifierKey == "" {
					return fmt.Errorf("no verifier key: no %s, and the source has none (a ledger file does not hold its key): give --data hubd's data folder or --addr a running hubd", filepath.Join(a.data, signkey.KeyFile))
				}
				k = keySource{vkey: sc.VerifierKey}
			}
			fmt.Fprintln(a.stdout, k.vkey)
			return nil
		},
	}
}

func (a *app) proveCommand() *cobra.Command {
	var seq uint64
	var event, cpFile, out string
	cmd := &cobra.Command{
		Use:   "prove (--seq N | --event ID) [--checkpoint FILE] [--out FILE]",
		Short: "A self-contained proof that one record is in the log, for an outside auditor",
		Long: `prove writes a proof bundle (JSON): the record as exported, its leaf data, its
leaf index, the Merkle inclusion proof and the signed checkpoint it is proven
in (--checkpoint FILE, default the newest the log holds). Whoever has the
bundle and the verifier key checks it with check-proof, without the ledger
and without seeing any other record.`,
		Example: `  auditq prove --seq 8 --out kick-8.proof.json
  auditq prove --event 01KJME9T504H4G8JZY4CQ3W5S3 --checkpoint cp-2026-03-01.txt`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := audit.ProveQuery{Seq: seq}
			if event != "" {
				id, err := parseULID(event)
				if err != nil {
					return usagef("--event %q: %v", event, err)
				}
				q.EventID = id
			}
			if cpFile != "" {
				cps, err := readCheckpoints([]string{cpFile})
				if err != nil {
					return err
				}
				if len(cps) != 1 {
					return usagef("--checkpoint names %d checkpoints; want one", len(cps))
				}
				q.Checkpoint = cps[0].note
			}
			src, closeFn, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			b, err := src.Prove(cmd.Context(), q)
			if err != nil {
				return err
			}
			data, err := b.Marshal()
			if err != nil {
				return err
			}
			if out == "" {
				_, err = a.stdout.Write(data)
				return err
			}
			if err := os.WriteFile(out, data, 0o644); err != nil {
				return err
			}
			c, _ := checkpoint.Parse([]byte(b.Checkpoint))
			fmt.Fprintf(a.stdout, "proof of seq %d in the tree of size %d of log %s written to %s\n", b.Seq, c.Size, b.LogID, out)
			return nil
		},
	}
	cmd.Flags().Uint64Var(&seq, "seq", 0, "the record's seq")
	cmd.Flags().StringVar(&event, "event", "", "the record's event id (ULID)")
	cmd.Flags().StringVar(&cpFile, "checkpoint", "", "a signed checkpoint file to prove it in (default: the newest in the log)")
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the bundle to FILE")
	return cmd
}

type checkProofJSON struct {
	Valid     bool   `json:"valid"`
	Seq       uint64 `json:"seq"`
	LeafIndex uint64 `json:"leaf_index"`
	LogID     string `json:"log_id"`
	Size      uint64 `json:"tree_size,omitempty"`
	Root      string `json:"tree_root,omitempty"`
	Signer    string `json:"signer,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

func (a *app) checkProofCommand() *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "check-proof FILE --key VKEY",
		Short: "Verify a proof bundle with no ledger at hand; exit 3 when it does not hold",
		Long: `check-proof verifies a bundle from prove: the checkpoint's signature by the
verifier key, that the record's leaf is in the checkpoint's tree (the
inclusion proof), and that the record shown is the one the leaf holds. It
reads nothing else: no ledger, no hub. The record's chain hash is shown as
recorded; the bundle proves the record's bytes, not the chain.`,
		Example: `  auditq check-proof kick-8.proof.json --key "$(cat hubd.vkey)"
  auditq check-proof kick-8.proof.json --key hubd.vkey --json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("check-proof takes one bundle file (see %s --help)", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				return usagef("check-proof needs --key: the hub's verifier key, kept off the host (it has no ledger to ask)")
			}
			k, err := a.verifierKey(cmd.Context(), key, nil)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			b, err := audit.ParseBundle(data)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			res, err := audit.CheckBundle(b, k.vkey)
			v := checkProofJSON{Valid: err == nil, Seq: b.Seq, LeafIndex: b.LeafIndex, LogID: b.LogID}
			if err == nil {
				v.Size, v.Root, v.Signer = res.Checkpoint.Size, base64.StdEncoding.EncodeToString(res.Checkpoint.Root[:]), res.Signer
			} else if errors.Is(err, audit.ErrCheckFailed) {
				v.Reason = strings.TrimPrefix(err.Error(), audit.ErrCheckFailed.Error()+": ")
			} else {
				return err
			}
			w := bufio.NewWriter(a.stdout)
			defer w.Flush()
			if a.json {
				if err := jsonLine(w, v); err != nil {
					return err
				}
			} else if v.Valid {
				fmt.Fprintf(w, "proof holds: seq %d is leaf %d of the tree of size %d of log %s, signed by %s\n", v.Seq, v.LeafIndex, v.Size, v.LogID, v.Signer)
				var rec bytes.Buffer
				_ = json.Compact(&rec, b.Record)
				fmt.Fprintf(w, "record: %s\n", rec.Bytes())
			}
			if !v.Valid {
				w.Flush()
				return fmt.Errorf("proof does not hold: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the verifier key (or a file holding it)")
	return cmd
}

type consistencyJSON struct {
	Holds   bool     `json:"holds"`
	Origin  string   `json:"origin"`
	OldSize uint64   `json:"old_size"`
	OldRoot string   `json:"old_root"`
	NewSize uint64   `json:"new_size"`
	NewRoot string   `json:"new_root"`
	Proof   []string `json:"proof"`
	Reason  string   `json:"reason,omitempty"`
}

func (a *app) consistencyCommand() *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "consistency OLD NEW [--key VKEY]",
		Short: "Prove that a newer signed checkpoint extends an older one; exit 3 when it does not",
		Long: `consistency checks both checkpoints' signatures, asks the log for the Merkle
consistency proof between their sizes and checks it against their roots:
the newer tree holds the older one's records unchanged, with records only
added after them.`,
		Example: `  auditq consistency cp-2026-03-01.txt cp-2026-04-01.txt --key hubd.vkey
  auditq --db backup.db consistency old.txt new.txt --json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("consistency takes two checkpoint files, OLD and NEW (see %s --help)", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := readCheckpoints(args)
			if err != nil {
				return err
			}
			if len(files) != 2 {
				return usagef("consistency takes two checkpoint files, not directories")
			}
			src, closeFn, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			k, err := a.verifierKey(cmd.Context(), key, src)
			if err != nil {
				return err
			}
			a.warnKey(k)
			var cps [2]checkpoint.Checkpoint
			for i, f := range files {
				if cps[i], err = checkpoint.Open(f.note, k.vkey); err != nil {
					if errors.Is(err, checkpoint.ErrSignature) {
						return fmt.Errorf("%w: %s: %v", audit.ErrCheckFailed, f.name, err)
					}
					return usagef("%s: %v", f.name, err)
				}
			}
			old, nw := cps[0], cps[1]
			if old.Origin != nw.Origin {
				return fmt.Errorf("%w: the checkpoints are of two logs (%q and %q)", audit.ErrCheckFailed, old.Origin, nw.Origin)
			}
			if old.Size > nw.Size {
				return usagef("OLD (size %d) is larger than NEW (size %d): give the older first", old.Size, nw.Size)
			}
			c, err := src.ConsistencyProof(cmd.Context(), old.Size, nw.Size)
			if err != nil {
				return err
			}
			v := consistencyJSON{Origin: old.Origin, OldSize: old.Size, OldRoot: hex.EncodeToString(old.Root[:]), NewSize: nw.Size, NewRoot: hex.EncodeToString(nw.Root[:]), Proof: []string{}}
			for _, h := range c.Proof {
				v.Proof = append(v.Proof, hex.EncodeToString(h[:]))
			}
			cerr := checkConsistency(c, old, nw)
			v.Holds = cerr == nil
			if cerr != nil {
				v.Reason = cerr.Error()
			}
			w := bufio.NewWriter(a.stdout)
			defer w.Flush()
			if a.json {
				if err := jsonLine(w, v); err != nil {
					return err
				}
			} else if v.Holds {
				fmt.Fprintf(w, "consistent: the tree of size %d extends the tree of size %d (log %s), proof of %d hashes verified\n", nw.Size, old.Size, old.Origin, len(c.Proof))
			}
			if cerr != nil {
				w.Flush()
				return fmt.Errorf("%w: %v", audit.ErrCheckFailed, cerr)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the verifier key (or a file holding it); default DATA/checkpoint.key or the hub's, with a warning")
	return cmd
}

// checkConsistency checks the log's proof against the checkpoints' roots
// (not the log's: the log is what is being checked).
func checkConsistency(c audit.Consistency, old, nw checkpoint.Checkpoint) error {
	if err := ledgerCheckConsistency(c.Proof, old, nw); err != nil {
		if c.Old.Root != old.Root || c.New.Root != nw.Root {
			return fmt.Errorf("the log's proof does not connect the checkpoints' roots: this log is not the one they signed at size %d or %d (run verify --checkpoint): %v", old.Size, nw.Size, err)
		}
		return fmt.Errorf("the newer checkpoint does not extend the older: %v", err)
	}
	return nil
}

func ledgerCheckConsistency(proof []ledger.Hash, old, nw checkpoint.Checkpoint) error {
	return ledger.CheckConsistency(proof, old.TreeHead, nw.TreeHead)
}

// parseULID reads an event id as auditq prints it.
func parseULID(s string) (ulid.ULID, error) {
	return ulid.ParseStrict(strings.ToUpper(s))
}
