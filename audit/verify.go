package audit

import (
	"context"
	"errors"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
)

// VerifyQuery is the range to verify: seqs From..To (0 leaves a side open),
// narrowed by a time window when Since or Until is set.
type VerifyQuery struct {
	From, To     uint64
	Since, Until time.Time
}

// VerifyResult is the outcome of a verification.
type VerifyResult struct {
	// From and To are the seqs checked, Checked how many records.
	From, To, Checked uint64
	// Head is the ledger's head when verification began; its hash is what
	// an operator writes down (or signs) to detect a later rewrite.
	Head ledger.Head
	// Broken is the first bad seq and why; nil when the range is intact.
	Broken *ledger.ChainError
}

// Intact reports whether the range verified.
func (r VerifyResult) Intact() bool { return r.Broken == nil }

// Verify recomputes the hash chain over the range and reports the first bad
// seq. progress, if set, is called now and then with the last seq checked,
// from inside a read transaction of the scan: it must return quickly and
// never wait for a client (see Server.Verify).
// A broken chain is a result; the error is for a verification that could not
// run.
func (e *Engine) Verify(ctx context.Context, q VerifyQuery, progress func(seq uint64)) (VerifyResult, error) {
	head := e.store.Head()
	res := VerifyResult{Head: head, From: q.From, To: q.To}
	if res.From == 0 {
		res.From = 1
	}
	if res.To == 0 || res.To > head.Seq {
		res.To = head.Seq
	}
	if !q.Since.IsZero() || !q.Until.IsZero() {
		if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
			return res, invalid("--until is not after --since")
		}
		from, to, empty, err := e.seqRange(ctx, q.Since, q.Until)
		if err != nil {
			return res, err
		}
		if empty {
			res.To = res.From - 1
			return res, nil
		}
		res.From = max(res.From, from)
		if to != 0 {
			res.To = min(res.To, to)
		}
	}
	if res.From > res.To {
		return res, nil // nothing to check
	}
	var p ledger.VerifyProgress
	if progress != nil {
		p = ledger.VerifyProgress(progress)
	}
	n, err := e.store.Verify(ctx, res.From, res.To, p)
	res.Checked = n
	var ce *ledger.ChainError
	if errors.As(err, &ce) {
		res.Broken = ce
		return res, nil
	}
	return res, err
}
