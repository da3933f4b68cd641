package projections

import (
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// TestExpiryHeapTracksActiveBans: bans lifted or replaced before their
// expiry do not pile up in the expiry heap (memory follows active bans,
// not bans ever recorded), and expiry still lifts the ban in force.
func TestExpiryHeapTracksActiveBans(t *testing.T) {
	st := New()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seq := uint64(0)
	apply := func(at time.Time, ev *eventpb.Event) {
		seq++
		st.Apply(&ledger.Record{Seq: seq, Time: at, Event: ev})
	}
	ban := func(at time.Time, user string, until time.Time) {
		apply(at, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_BANNED, User: user,
			Body: &eventpb.Event_UserBanned{UserBanned: &eventpb.UserBanned{UntilUnixNano: until.UnixNano()}}})
	}
	year := 365 * 24 * time.Hour
	for i := range 10000 {
		now := t0.Add(time.Duration(i) * time.Second)
		ban(now, "u", now.Add(year))
		ban(now, "u", now.Add(2*year)) // an extension replaces it
		apply(now, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_UNBANNED, User: "u"})
	}
	if len(st.bans) != 0 || len(st.expiry) > 2*minStaleExpiry {
		t.Fatalf("after 10,000 ban/extend/unban rounds: %d active bans, %d heap entries; want 0 and at most %d", len(st.bans), len(st.expiry), 2*minStaleExpiry)
	}
	end := t0.Add(time.Hour)
	ban(end, "v", end.Add(time.Minute))
	ban(end.Add(2*time.Minute), "w", end.Add(time.Hour)) // lifts v's on its way
	if _, banned := st.BanAt("v", end.Add(2*time.Minute)); banned || st.Counters().BansExpired != 1 {
		t.Fatalf("v banned %v, %d expired; want v's ban lifted by expiry", banned, st.Counters().BansExpired)
	}
	if _, banned := st.BanAt("w", end.Add(2*time.Minute)); !banned {
		t.Fatal("w not banned; want banned")
	}
}
