package audit

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ParseTime reads a time as auditq accepts it:
//   - RFC3339, with or without fractional seconds ("2026-03-01T10:00:00Z");
//   - a date and time without a zone ("2026-03-01T10:00:00", "2026-03-01
//     10:00") or a date ("2026-03-01"), in loc;
//   - "now", or a duration before now: "90s", "15m", "2h", "3d", "1w"
//     (Go durations, plus d and w).
//
// Anything else is ErrInvalid.
func ParseTime(s string, now time.Time, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if loc == nil {
		loc = time.UTC
	}
	if s == "" {
		return time.Time{}, invalid("empty time")
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
	return time.Time{}, invalid("malformed time %q (want RFC3339 like 2026-03-01T10:00:00Z, a date, or a duration ago like 2h or 3d)", s)
}

// goDuration matches what time.ParseDuration reads, less the sign.
var goDuration = regexp.MustCompile(`^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`)

// parseAgo reads a duration before now. ok is false for what is not one;
// one too long for a time.Duration (about 292 years) is an error, where a
// conversion would silently wrap it.
func parseAgo(s string) (d time.Duration, ok bool, err error) {
	tooFar := func() error {
		return invalid("relative time %q is too far back (at most about 292 years: 106751d)", s)
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
