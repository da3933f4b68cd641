package audit

import (
	"time"

	"github.com/sessionledger/sessionledger/internal/timearg"
)

// ParseTime reads a time as auditq (and hubctl) accept it, with
// internal/timearg's rules:
//   - RFC3339, with or without fractional seconds ("2026-03-01T10:00:00Z");
//   - a date and time without a zone ("2026-03-01T10:00:00", "2026-03-01
//     10:00") or a date ("2026-03-01"), in loc;
//   - "now", or a duration before now: "90s", "15m", "2h", "3d", "1w"
//     (Go durations, plus d and w).
//
// Anything else is ErrInvalid.
func ParseTime(s string, now time.Time, loc *time.Location) (time.Time, error) {
	t, err := timearg.Parse(s, now, loc)
	if err != nil {
		return time.Time{}, invalid("%s", err)
	}
	return t, nil
}
