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

// VerifyProgress is how far a verification has got: Seq is the last seq
// checked, of From to To (the range once its times are resolved to seqs).
type VerifyProgress struct {
	From, To, Seq uint64
}

// Verify recomputes the hash chain over the range and reports the first bad
// seq. progress, if set, is called now and then with how far it has got,
// from inside a read transaction of the scan: it must return quickly and
// never wait for a client (see Server.Verify).
// A broken chain is a result; the error is for a verification that could not
// run. A range that starts past the head or ends before it starts is
// ErrInvalid; a time window with no record in it is an empty result.
func (e *Engine) Verify(ctx context.Context, q VerifyQuery, progress func(VerifyProgress)) (VerifyResult, error) {
	head := e.store.Head()
	res := VerifyResult{Head: head, From: q.From, To: q.To}
	switch {
	case q.From != 0 && q.To != 0 && q.From > q.To:
		return res, invalid("--from %d is after --to %d", q.From, q.To)
	case q.From > head.Seq:
		return res, invalid("--from %d is past the log's head (seq %d)", q.From, head.Seq)
	}
	if res.From == 0 {
		res.From = 1
	}
	if res.To == 0 || res.To > head.Seq {
		res.To = head.Seq
	}
	if !q.Since.IsZero() || !q.Until.IsZero() {
		if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
			return res, invalid("--to is not after --from")
		}
		from, to, empty, err := e.seqRange(ctx, q.Since, q.Until)
		if err != nil {
			return res, err
		}
		if !q.Since.IsZero() && from > head.Seq {
			return res, invalid("--from %s is after the log's last record (seq %d at %s)",
				q.Since.UTC().Format(time.RFC3339Nano), head.Seq, head.Time.UTC().Format(time.RFC3339Nano))
		}
		if empty {
			res.From = max(res.From, from)
			res.To = res.From - 1
			return res, nil // no record in the window
		}
		res.From = max(res.From, from)
		if to != 0 {
			res.To = min(res.To, to)
		}
	}
	if res.From > res.To+1 {
		// A seq on one side and a time on the other, in the wrong order.
		return res, invalid("the range ends (seq %d) before it starts (seq %d)", res.To, res.From)
	}
	if res.From > res.To {
		return res, nil // nothing to check
	}
	var p ledger.VerifyProgress
	if progress != nil {
		p = func(seq uint64) { progress(VerifyProgress{From: res.From, To: res.To, Seq: seq}) }
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
