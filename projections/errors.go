package projections

import "errors"

var (
	// ErrBadSnapshot means a stored snapshot could not be used: another
	// format version, or damaged. The state is rebuilt from the log instead.
	ErrBadSnapshot = errors.New("projections: unusable snapshot")
	// ErrClosed is returned by a closed Runner.
	ErrClosed = errors.New("projections: runner closed")
	// ErrNotStarted is returned by a Runner before Start.
	ErrNotStarted = errors.New("projections: runner not started")
)
