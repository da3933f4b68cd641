// Package timearg reads the times every sessionledger tool takes on its
// command line (auditq's --since, --until, --at; hubctl ban's --until), so
// that one spelling works everywhere. It imports nothing of ours: client
// tools use it without linking the server.
package timearg

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrMalformed is what every error of Parse is (errors.Is): a time that is
// none of the accepted forms, or a relative time too far back to represent.
var ErrMalformed = errors.New("malformed time")

// malformed is an error of Parse: its own message, and ErrMalformed.
type malformed string

func (m malformed) Error() string      { return string(m) }
func (malformed) Is(target error) bool { return target == ErrMalformed }

func malformedf(format string, args ...any) error { return malformed(fmt.Sprintf(format, args...)) }

// Forms is a short description of the accepted forms, for help texts.
const Forms = `RFC3339 (2026-03-01T10:00:00Z), a date or date-time without a zone ("2026-03-01", "2026-03-01 10:00") read in the tool's zone, "now", or a duration ago (90s, 15m, 2h, 3d, 1w)`

// Parse reads a time:
//   - RFC3339, with or without fractional seconds ("2026-03-01T10:00:00Z");
//   - a date and time without a zone ("2026-03-01T10:00:00", "2026-03-01
//     10:00") or a date ("2026-03-01"), in loc (nil: UTC);
//   - "now", or a duration before now: "90s", "15m", "2h", "3d", "1w"
//     (Go durations, plus d and w).
//
// Anything else is an error wrapping ErrMalformed.
func Parse(s string, now time.Time, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if loc == nil {
		loc = time.UTC
	}
	if s == "" {
		return time.Time{}, malformedf("empty time")
	}
	if s == "now" {
		return now, nil
	}
	if d, ok, err := parseAgo(s); err != nil {
		return time.Time{}, err
	} else if ok {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, malformedf("malformed time %q (want RFC3339 like 2026-03-01T10:00:00Z, a date like \"2026-03-01 10:00\", or a duration ago like 2h or 3d)", s)
}

// goDuration matches what time.ParseDuration reads, less the sign.
var goDuration = regexp.MustCompile(`^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`)

// parseAgo reads a duration before now. ok is false for what is not one;
// one too long for a time.Duration (about 292 years) is an error, where a
// conversion would silently wrap it.
func parseAgo(s string) (d time.Duration, ok bool, err error) {
	tooFar := func() error {
		return malformedf("relative time %q is too far back (at most about 292 years: 106751d)", s)
	}
	if n := len(s); n > 1 && (s[n-1] == 'd' || s[n-1] == 'w') {
		v, err := strconv.ParseFloat(s[:n-1], 64)
		if err != nil || v < 0 || math.IsNaN(v) {
			return 0, false, nil
		}
		unit := 24 * time.Hour
		if s[n-1] == 'w' {
			unit *= 7
		}
		if v*float64(unit) >= math.MaxInt64 { // also +Inf
			return 0, false, tooFar()
		}
		return time.Duration(v * float64(unit)), true, nil
	}
	d, err = time.ParseDuration(s)
	switch {
	case err != nil && goDuration.MatchString(s):
		return 0, false, tooFar() // well formed: ParseDuration fails only on overflow
	case err != nil || d < 0:
		return 0, false, nil
	}
	return d, true, nil
}
