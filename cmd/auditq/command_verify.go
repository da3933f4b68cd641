package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/internal/termtext"
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
}

func (a *app) verifyCommand() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "verify [--from SEQ|TIME] [--to SEQ|TIME]",
		Short: "Recompute the hash chain; exit 0 when intact, 3 naming the first bad sequence",
		Long: `Verify recomputes every record's SHA-256 chain hash from its predecessor and
compares it with the stored one. It names the first bad sequence and why: a
changed record, a deleted one (a gap), a moved one, a truncated one. It ends
by printing the head's seq and hash: write them down (or sign them) to detect
a later rewrite, which the chain alone cannot (see docs/architecture.md).
A progress bar is shown on a terminal.`,
		Example: `  auditq verify
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
			src, closeFn, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
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
			if !res.Intact() {
				a.kind = exitIntegrity
			}
			return a.printVerify(res)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "first seq, or a time")
	cmd.Flags().StringVar(&to, "to", "", "last seq, or a time")
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

func (a *app) printVerify(res audit.VerifyResult) error {
	w := bufio.NewWriter(a.stdout)
	defer w.Flush()
	hash := hex.EncodeToString(res.Head.Hash[:])
	switch {
	case a.json:
		v := verifyJSON{Intact: res.Intact(), From: res.From, To: res.To, Checked: res.Checked, HeadSeq: res.Head.Seq, HeadHash: hash}
		if b := res.Broken; b != nil {
			v.BadSeq, v.Reason = b.Seq, b.Reason
		}
		return jsonLine(w, v)
	case a.csv:
		c := csvOut(w, "intact", "from_seq", "to_seq", "checked", "head_seq", "head_hash", "bad_seq", "reason")
		row := []string{strconv.FormatBool(res.Intact()), strconv.FormatUint(res.From, 10), strconv.FormatUint(res.To, 10),
			strconv.FormatUint(res.Checked, 10), strconv.FormatUint(res.Head.Seq, 10), hash, "", ""}
		if b := res.Broken; b != nil {
			row[6], row[7] = strconv.FormatUint(b.Seq, 10), b.Reason
		}
		_ = c.Write(row)
		c.Flush()
		return c.Error()
	}
	if b := res.Broken; b != nil {
		fmt.Fprintf(w, "NOT INTACT: first bad seq %d: %s\n", b.Seq, termtext.Line(b.Reason))
		fmt.Fprintf(w, "checked %d records from seq %d before it; the log's head is seq %d\n", res.Checked, res.From, res.Head.Seq)
		return nil
	}
	if res.Checked == 0 {
		fmt.Fprintf(w, "nothing to verify in that range (the log's head is seq %d)\n", res.Head.Seq)
		return nil
	}
	fmt.Fprintf(w, "intact: seq %d to %d, %d records, hash chain verified\n", res.From, res.To, res.Checked)
	fmt.Fprintf(w, "head: seq %d hash %s\n", res.Head.Seq, hash)
	return nil
}
