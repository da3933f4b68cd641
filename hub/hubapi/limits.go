package hubapi

import (
	"fmt"
	"time"
)

// Bounds on what a client or an operator may ask for. They keep every
// duration representable (time.Duration overflows past 292 years, which
// recorded a ban "until" 1734) and every name well below what the ledger
// accepts, so a bad request is refused with InvalidArgument before
// anything is recorded.
const (
	// MaxBanDuration is the longest ban with an expiry, as a duration or
	// as an expiry time from now. Leave both out for a ban without expiry.
	MaxBanDuration = 100 * 365 * 24 * time.Hour
	// MaxReconnectAfter is the longest "reconnect after" a kick may
	// advise; keep someone out for longer with a ban.
	MaxReconnectAfter = 365 * 24 * time.Hour
	// MaxNameBytes bounds a user, device, session id, node or topic.
	MaxNameBytes = 256
	// MaxReasonBytes bounds a reason.
	MaxReasonBytes = 1024
	// MaxNotifyPayload bounds a notification payload.
	MaxNotifyPayload = 64 << 10
	// DefaultMaxMessageSize is the largest message hubd accepts by default
	// (--max-message-size): a NotifyRequest with a payload of
	// MaxNotifyPayload and names of MaxNameBytes, with room to spare for
	// its framing.
	DefaultMaxMessageSize = MaxNotifyPayload + 1<<10
)

// SessionsSummary is the line under every list of live sessions (hubctl
// sessions, auditq sessions --at, the console), so the tools count alike:
// "0 live sessions", "1 live session", "100 of 2345 live sessions shown".
func SessionsSummary(shown, total int) string {
	noun := "sessions"
	if total == 1 {
		noun = "session"
	}
	if shown < total {
		return fmt.Sprintf("%d of %d live %s shown", shown, total, noun)
	}
	return fmt.Sprintf("%d live %s", total, noun)
}
