package audit

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrInvalid is returned for a query that cannot be answered as asked: a
	// malformed time, an unknown event type, a window that ends before it
	// starts, a missing required filter.
	ErrInvalid = errors.New("invalid query")

	// ErrNoSuchSession is returned by Timeline for a session the log never
	// mentions.
	ErrNoSuchSession = errors.New("no such session in the log")

	// ErrUnauthenticated is returned by Client when the hub refused the
	// admin token (missing or wrong).
	ErrUnauthenticated = errors.New("the hub refused the admin token")

	// ErrUnavailable is returned by Client when the hub cannot be reached.
	ErrUnavailable = errors.New("hub unavailable")

	// ErrNoCheckpoint is returned by Checkpoint and Prove when the ledger
	// holds no signed checkpoint yet (hubd signs one when the log grew,
	// every --signed-checkpoint-every).
	ErrNoCheckpoint = errors.New("no signed checkpoint in this ledger yet")

	// ErrCheckFailed is returned by CheckBundle, and wrapped by auditq's
	// checks, when a proof, a checkpoint's signature or a consistency proof
	// does not verify: the evidence does not hold.
	ErrCheckFailed = errors.New("check failed")
)

// SeqRange is the seqs From to To, both included.
type SeqRange struct{ From, To uint64 }

func (r SeqRange) String() string {
	if r.From == r.To {
		return fmt.Sprint(r.From)
	}
	return fmt.Sprintf("%d to %d", r.From, r.To)
}

// CorruptError ends a query that skipped damaged records: records it could
// not decode (Seqs), seqs missing from the log (Missing: the log jumps
// over them, as it does where a record was deleted), and damage that is no
// record at all (Strays). Every other matching record was delivered.
type CorruptError struct {
	Seqs    []uint64
	Missing []SeqRange
	// Strays describes each entry of the log that is no record, so no seq
	// names it: a key that is not an 8-byte seq (a stray or truncated
	// key), or a seq out of order. The records around it were read.
	Strays []string
	// Err is the first damage met.
	Err error
}

func (e *CorruptError) Error() string {
	var parts []string
	if len(e.Seqs) > 0 {
		parts = append(parts, "corrupt record at seq "+listed(e.Seqs, func(q uint64) string { return fmt.Sprint(q) })+" skipped")
	}
	if len(e.Missing) > 0 {
		parts = append(parts, "seq "+listed(e.Missing, SeqRange.String)+" missing from the log")
	}
	if len(e.Strays) > 0 {
		parts = append(parts, "damaged log entry skipped ("+listed(e.Strays, func(s string) string { return s })+")")
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%v (run verify)", e.Err)
	}
	return strings.Join(parts, " and ") + "; the other records were read (run verify)"
}

// listed joins the first ten items of l, and says how many more there are.
func listed[T any](l []T, str func(T) string) string {
	s := make([]string, 0, min(len(l), 11))
	for i, x := range l {
		if i == 10 {
			s = append(s, fmt.Sprintf("and %d more", len(l)-10))
			break
		}
		s = append(s, str(x))
	}
	return strings.Join(s, ", ")
}

// found is how many damaged records e lists.
func (e *CorruptError) found() int { return len(e.Seqs) + len(e.Missing) + len(e.Strays) }

// Unwrap lets errors.Is(err, ledger.ErrCorrupt) see through.
func (e *CorruptError) Unwrap() error { return e.Err }

// invalidError is an ErrInvalid that reads as its own message alone, so
// auditq can print it as the user's mistake without a generic prefix.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(format string, args ...any) error {
	return &invalidError{fmt.Sprintf(format, args...)}
}

func asCorrupt(err error, target **CorruptError) bool { return errors.As(err, target) }
