package projections

import (
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// applier returns a func that applies ev to st at the time given, as the
// record of the next seq (from 1).
func applier(st *State) func(at time.Time, ev *eventpb.Event) {
	seq := uint64(0)
	return func(at time.Time, ev *eventpb.Event) {
		seq++
		st.Apply(&ledger.Record{Seq: seq, Time: at, Event: ev})
	}
}

// TestExpiryHeapTracksActiveBans: bans lifted or replaced before their
// expiry do not pile up in the expiry heap (memory follows active bans,
// not bans ever recorded), and expiry still lifts the ban in force.
func TestExpiryHeapTracksActiveBans(t *testing.T) {
	st := New()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	apply := applier(st)
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
	if len(st.bans) != 0 || st.expiry.Len() > 2*minStaleExpiry {
		t.Fatalf("after 10,000 ban/extend/unban rounds: %d active bans, %d heap entries; want 0 and at most %d", len(st.bans), st.expiry.Len(), 2*minStaleExpiry)
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

// TestLapseHeapTracksWhatIsInForce: revocations and kicks' refusals that
// were replaced before they lapsed do not pile up in the lapse heap, and
// the one in force still lapses at its Until.
func TestLapseHeapTracksWhatIsInForce(t *testing.T) {
	st := New()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	apply := applier(st)
	year := 365 * 24 * time.Hour
	apply(t0, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: "u", Device: "d", Session: "s",
		Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{Token: &eventpb.ClientToken{Id: "tok", ExpiresUnixNano: t0.Add(year).UnixNano()}}}})
	for i := range 10000 {
		now := t0.Add(time.Duration(i) * time.Second)
		// Each lapses later than the one before, so it replaces it.
		apply(now, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED,
			Body: &eventpb.Event_TokenRevoked{TokenRevoked: &eventpb.TokenRevoked{TokenId: "tok", UntilUnixNano: now.Add(year).UnixNano()}}})
		apply(now, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED, User: "u",
			Body: &eventpb.Event_TokenRevoked{TokenRevoked: &eventpb.TokenRevoked{IssuedBeforeUnixNano: now.UnixNano(), UntilUnixNano: now.Add(year).UnixNano()}}})
		apply(now, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, User: "u",
			Body: &eventpb.Event_KickRequested{KickRequested: &eventpb.KickRequested{Target: eventpb.KickTarget_KICK_TARGET_USER,
				Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED, RefuseConnectsMs: year.Milliseconds()}}})
	}
	if err := CheckIndexes(st); err != nil {
		t.Fatal(err)
	}
	// In force: a token's and a user's revocation, a device's and a
	// token's refusal.
	if st.lapses.Len() > 4+2*minStaleExpiry {
		t.Fatalf("after 10,000 rounds of replacements: %d lapse entries; want at most %d", st.lapses.Len(), 4+2*minStaleExpiry)
	}
	end := t0.Add(9999*time.Second + year) // the last round's Until
	apply(end.Add(-time.Nanosecond), &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT})
	if got := len(st.Revocations(end.Add(-time.Nanosecond))) + len(st.Refusals(end.Add(-time.Nanosecond))); got != 4 {
		t.Fatalf("just before the last Until: %d revocations and refusals; want 4", got)
	}
	apply(end, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT})
	if st.lapses.Len() != 0 || len(st.revokedTokens)+len(st.revokedUsers)+len(st.refusedDevices)+len(st.refusedTokens) != 0 {
		t.Fatalf("at the last Until: %d lapse entries, %d+%d revocations, %d+%d refusals; want none", st.lapses.Len(),
			len(st.revokedTokens), len(st.revokedUsers), len(st.refusedDevices), len(st.refusedTokens))
	}
	if err := CheckIndexes(st); err != nil {
		t.Fatal(err)
	}
}
