package main

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/internal/termtext"
	"github.com/sessionledger/sessionledger/ledger/checkpoint"
)

type verifyJSON struct {
	Intact   bool   `json:"intact"`
	From     uint64 `json:"from_seq"`
	To       uint64 `json:"to_seq"`
	Checked  uint64 `json:"checked"`
	HeadSeq  uint64 `json:"head_seq"`
	HeadHash string `json:"head_hash"`
	BadSeq   uint64 `json:"bad_seq,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// The whole log only.
	TreeRoot    string                 `json:"tree_root,omitempty"`
	TreeBadSeq  uint64                 `json:"tree_bad_seq,omitempty"`
	TreeReason  string                 `json:"tree_reason,omitempty"`
	Findings    []findingJSON          `json:"findings,omitempty"`
	Checkpoints []checkpointJSONResult `json:"checkpoints,omitempty"`
	KeySource   string                 `json:"key_source,omitempty"`
}

type findingJSON struct {
	Where   string `json:"where"`
	Seq     uint64 `json:"seq"`
	Problem string `json:"problem"`
}

type checkpointJSONResult struct {
	File    string `json:"file"`
	Origin  string `json:"origin"`
	Size    uint64 `json:"size"`
	Root    string `json:"root"`
	OK      bool   `json:"ok"`
	Problem string `json:"problem,omitempty"`
}

// checkpointResult is one --checkpoint file's outcome.
type checkpointResult struct {
	file string
	audit.CheckpointResult
}

func (a *app) verifyCommand() *cobra.Command {
	var from, to, key string
	var cpPaths []string
	cmd := &cobra.Command{
		Use:   "verify [--from SEQ|TIME] [--to SEQ|TIME] [--checkpoint FILE... [--key VKEY]]",
		Short: "Recompute the hash chain and the Merkle tree, check saved checkpoints; exit 3 naming what differs",
		Long: `Verify recomputes every record's SHA-256 chain hash from its predecessor and
compares it with the stored one. It names the first bad sequence and why: a
changed record, a deleted one (a gap), a moved one, a truncated one.

Over the whole log (no --from or --to) it also recomputes the Merkle tree from
the records and compares it with the stored tree, and cross-checks everything
else in the file that names a seq: index postings, consumer-group offsets,
the signed checkpoints stored in the file, the projection checkpoint and
snapshots. Any that points past the head or disagrees with the record there
is reported: that is what a careless truncation leaves behind.

The chain alone cannot tell a truncated or rewritten log from a genuine one.
--checkpoint FILE (repeatable; a directory stands for its checkpoint-* files)
checks the log against signed checkpoints saved earlier, off the host: each
signature (by --key, the verifier key), that the log still holds at least its
size, that the tree at that size has its root, and that the current head is
consistent with it. See docs/verification.md. A progress bar is shown on a
terminal.`,
		Example: `  auditq verify
  auditq verify --checkpoint /mnt/worm/checkpoints --key hubd.vkey
  auditq verify --from 1000000 --to 2000000
  auditq verify --from 2026-03-01 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var q audit.VerifyQuery
			var err error
			if q.From, q.Since, err = a.seqOrTime("from", from); err != nil {
				return err
			}
			if q.To, q.Until, err = a.seqOrTime("to", to); err != nil {
				return err
			}
			if !q.Until.IsZero() {
				// --to TIME includes records at that time.
				q.Until = q.Until.Add(time.Nanosecond)
			}
			var files []checkpointFile
			if len(cpPaths) > 0 {
				if files, err = readCheckpoints(cpPaths); err != nil {
					return err
				}
				if from != "" || to != "" {
					return usagef("--checkpoint checks the whole log: give no --from or --to")
				}
			} else if key != "" {
				return usagef("--key goes with --checkpoint")
			}
			src, closeFn, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			var results []checkpointResult
			var sent []int // results' indexes of the checkpoints whose signature held, sent to the source
			var ks keySource
			if len(files) > 0 {
				if ks, err = a.verifierKey(cmd.Context(), key, src); err != nil {
					return err
				}
				a.warnKey(ks)
				for _, f := range files {
					c, err := checkpoint.Open(f.note, ks.vkey)
					if err != nil {
						c, _ = checkpoint.Parse(f.note)
						results = append(results, checkpointResult{f.name, audit.CheckpointResult{Checkpoint: c, Problem: err.Error()}})
						continue
					}
					sent = append(sent, len(results))
					results = append(results, checkpointResult{file: f.name})
					q.Checkpoints = append(q.Checkpoints, c)
				}
			}
			var progress func(audit.VerifyProgress)
			if a.errTTY {
				var last time.Time
				start := time.Now()
				progress = func(p audit.VerifyProgress) {
					if time.Since(last) < 100*time.Millisecond {
						return
					}
					last = time.Now()
					fmt.Fprintf(a.stderr, "\r%s   ", progressLine(p, time.Since(start)))
				}
			}
			res, err := src.Verify(cmd.Context(), q, progress)
			if progress != nil {
				fmt.Fprint(a.stderr, "\r\033[K")
			}
			if err != nil {
				return err
			}
			for i, r := range res.Checkpoints {
				if i < len(sent) {
					results[sent[i]].CheckpointResult = r
				}
			}
			intact := res.Intact()
			for _, r := range results {
				intact = intact && r.OK
			}
			if !intact {
				a.kind = exitIntegrity
			}
			return a.printVerify(res, results, ks, intact)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "first seq, or a time")
	cmd.Flags().StringVar(&to, "to", "", "last seq, or a time")
	cmd.Flags().StringArrayVar(&cpPaths, "checkpoint", nil, "a signed checkpoint file, or a directory of them, to check the log against (repeatable)")
	cmd.Flags().StringVar(&key, "key", "", "verifier key of the checkpoints (or a file holding it); default DATA/checkpoint.key or the hub's, with a warning")
	return cmd
}

// progressLine says how far verify has got after elapsed: the seq reached,
// the percent of the range and the rate since the first seq verified (not
// since --from, which may be a time). A hub older than audit.VerifyProgress
// sends the seq alone.
func progressLine(p audit.VerifyProgress, elapsed time.Duration) string {
	if p.From == 0 || p.Seq < p.From || p.To < p.From {
		return fmt.Sprintf("verifying… seq %d", p.Seq)
	}
	done := p.Seq - p.From + 1
	rate := 0.0
	if d := elapsed.Seconds(); d > 0 {
		rate = float64(done) / d
	}
	pct := 100 * float64(done) / float64(p.To-p.From+1)
	return fmt.Sprintf("verifying… seq %d of %d to %d (%.0f%%)  %.0f records/s", p.Seq, p.From, p.To, pct, rate)
}

func (a *app) printVerify(res audit.VerifyResult, cps []checkpointResult, ks keySource, intact bool) error {
	w := bufio.NewWriter(a.stdout)
	defer w.Flush()
	hash := hex.EncodeToString(res.Head.Hash[:])
	switch {
	case a.json:
		v := verifyJSON{Intact: intact, From: res.From, To: res.To, Checked: res.Checked, HeadSeq: res.Head.Seq, HeadHash: hash}
		if b := res.Broken; b != nil {
			v.BadSeq, v.Reason = b.Seq, b.Reason
		}
		if res.Whole {
			v.TreeRoot = hex.EncodeToString(res.Root[:])
			if d := res.TreeDamage; d != nil {
				v.TreeBadSeq, v.TreeReason = d.Seq, d.Reason
			}
			for _, f := range res.Findings {
				v.Findings = append(v.Findings, findingJSON{f.Where, f.Seq, f.Problem})
			}
			for _, c := range cps {
				v.Checkpoints = append(v.Checkpoints, checkpointJSONResult{File: c.file, Origin: c.Checkpoint.Origin, Size: c.Checkpoint.Size,
					Root: base64.StdEncoding.EncodeToString(c.Checkpoint.Root[:]), OK: c.OK, Problem: c.Problem})
			}
			v.KeySource = ks.from
		}
		return jsonLine(w, v)
	case a.csv:
		c := csvOut(w, "intact", "from_seq", "to_seq", "checked", "head_seq", "head_hash", "bad_seq", "reason", "tree_root", "problems")
		row := []string{strconv.FormatBool(intact), strconv.FormatUint(res.From, 10), strconv.FormatUint(res.To, 10),
			strconv.FormatUint(res.Checked, 10), strconv.FormatUint(res.Head.Seq, 10), hash, "", "", "", ""}
		if b := res.Broken; b != nil {
			row[6], row[7] = strconv.FormatUint(b.Seq, 10), b.Reason
		}
		if res.Whole {
			row[8] = hex.EncodeToString(res.Root[:])
			var problems []string
			if d := res.TreeDamage; d != nil {
				problems = append(problems, fmt.Sprintf("stored tree at seq %d: %s", d.Seq, d.Reason))
			}
			for _, f := range res.Findings {
				problems = append(problems, f.String())
			}
			for _, cp := range cps {
				if !cp.OK {
					problems = append(problems, fmt.Sprintf("checkpoint %s: %s", cp.file, cp.Problem))
				}
			}
			row[9] = strings.Join(problems, "; ")
		}
		_ = c.Write(row)
		c.Flush()
		return c.Error()
	}
	if b := res.Broken; b != nil {
		fmt.Fprintf(w, "NOT INTACT: first bad seq %d: %s\n", b.Seq, termtext.Line(b.Reason))
		if res.Whole {
			fmt.Fprintf(w, "read %d records from seq 1 (the chain from there on as stored); the log's head is seq %d\n", res.Checked, res.Head.Seq)
		} else {
			fmt.Fprintf(w, "checked %d records from seq %d before it; the log's head is seq %d\n", res.Checked, res.From, res.Head.Seq)
		}
	} else if res.Checked == 0 && !res.Whole {
		fmt.Fprintf(w, "nothing to verify in that range (the log's head is seq %d)\n", res.Head.Seq)
		return nil
	} else if intact {
		fmt.Fprintf(w, "intact: seq %d to %d, %d records, hash chain verified\n", res.From, res.To, res.Checked)
	} else {
		fmt.Fprintf(w, "NOT INTACT: the hash chain verifies (seq %d to %d, %d records), but:\n", res.From, res.To, res.Checked)
	}
	if res.Whole {
		if d := res.TreeDamage; d != nil {
			fmt.Fprintf(w, "tree: the stored Merkle tree disagrees at seq %d: %s\n", d.Seq, d.Reason)
		} else if res.Checked < res.Head.Seq {
			fmt.Fprintf(w, "tree: recomputed only up to seq %d, where the log cannot be read on\n", res.Checked)
		} else if !res.StoredTree {
			fmt.Fprintf(w, "tree: root %s recomputed from the records (a format v2 file: no stored tree to compare)\n", hex.EncodeToString(res.Root[:]))
		} else {
			fmt.Fprintf(w, "tree: root %s recomputed from the records, as stored\n", hex.EncodeToString(res.Root[:]))
		}
		if len(res.Findings) == 0 {
			fmt.Fprintln(w, "cross-checks: index postings, consumer-group offsets, stored checkpoints and projection snapshots agree with the log")
		}
		for _, f := range res.Findings {
			fmt.Fprintf(w, "cross-check: %s\n", f)
		}
		for _, c := range cps {
			if c.OK {
				fmt.Fprintf(w, "checkpoint %s: size %d: ok: signed, in the log, consistent with the head\n", c.file, c.Checkpoint.Size)
			} else {
				fmt.Fprintf(w, "checkpoint %s: size %d: FAILED: %s\n", c.file, c.Checkpoint.Size, c.Problem)
			}
		}
	}
	fmt.Fprintf(w, "head: seq %d hash %s\n", res.Head.Seq, hash)
	return nil
}
