package audit

import (
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
	if d, ok := parseAgo(s); ok {
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

func parseAgo(s string) (time.Duration, bool) {
	if n := len(s); n > 1 && (s[n-1] == 'd' || s[n-1] == 'w') {
		v, err := strconv.ParseFloat(s[:n-1], 64)
		if err != nil || v < 0 {
			return 0, false
		}
		unit := 24 * time.Hour
		if s[n-1] == 'w' {
			unit *= 7
		}
		return time.Duration(v * float64(unit)), true
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, false
	}
	return d, true
}
