package projections

import "errors"

var (
	// ErrBadSnapshot means a stored snapshot could not be used: another
	// format version, or damaged. The state is rebuilt from the log instead.
	ErrBadSnapshot = errors.New("projections: unusable snapshot")
	// ErrClosed is returned by a closed Runner, and by a Start or Rebuild
	// that Close interrupted.
	ErrClosed = errors.New("projections: runner closed")
	// ErrStarted is returned by a second Start: a Runner starts once.
	ErrStarted = errors.New("projections: runner already started")
	// ErrNotStarted is returned by a Runner before Start.
	ErrNotStarted = errors.New("projections: runner not started")
	// ErrBeyondHead is returned by StateAt for a seq the log has not
	// reached: the state there is not known yet.
	ErrBeyondHead = errors.New("projections: seq beyond the head of the log")
	// ErrStalled is returned by Runner.Stalled while the Runner is behind
	// the log: a durable record has waited longer than StallAfter to be
	// applied. Nothing recorded since is enforced.
	ErrStalled = errors.New("projections: behind the log")
)
