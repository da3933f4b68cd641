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
)

// CorruptError ends a query that skipped records it could not decode. Every
// other matching record was delivered; Seqs lists the skipped ones.
type CorruptError struct {
	Seqs []uint64
	// Err is the first decode error met.
	Err error
}

func (e *CorruptError) Error() string {
	s := make([]string, 0, len(e.Seqs))
	for i, q := range e.Seqs {
		if i == 10 {
			s = append(s, fmt.Sprintf("and %d more", len(e.Seqs)-10))
			break
		}
		s = append(s, fmt.Sprint(q))
	}
	return fmt.Sprintf("corrupt record at seq %s skipped; the other records were read (run verify)", strings.Join(s, ", "))
}

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
