package projections_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
	"github.com/sessionledger/sessionledger/projections/projpb"
)

func connectWith(user, device, session, jti string, issued, expires time.Time) *eventpb.Event {
	ev := connect(user, device, session)
	ev.GetSessionConnected().Token = &eventpb.ClientToken{Id: jti, IssuedUnixNano: issued.UnixNano(), ExpiresUnixNano: expires.UnixNano()}
	return ev
}

func revokeToken(jti string, until time.Time) *eventpb.Event {
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED, Actor: "ops", Reason: "stolen",
		Body: &eventpb.Event_TokenRevoked{TokenRevoked: &eventpb.TokenRevoked{TokenId: jti, UntilUnixNano: until.UnixNano()}}}
}

func revokeUser(user string, before, until time.Time) *eventpb.Event {
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED, User: user, Actor: "ops", Reason: "log out everywhere",
		Body: &eventpb.Event_TokenRevoked{TokenRevoked: &eventpb.TokenRevoked{IssuedBeforeUnixNano: before.UnixNano(), UntilUnixNano: until.UnixNano()}}}
}

// stored decodes the state's snapshot: what it keeps, not what it answers.
func stored(t *testing.T, st *projections.State) *projpb.Snapshot {
	t.Helper()
	var pb projpb.Snapshot
	if err := proto.Unmarshal(mustMarshal(t, st), &pb); err != nil {
		t.Fatal(err)
	}
	return &pb
}

// TestRevocationByTokenID: the sessions holding the token end with cause
// revoked and the revocation's event id; a connect with it is marked too;
// once the token's expiry (the revocation's Until) passes, the state
// forgets the revocation.
func TestRevocationByTokenID(t *testing.T) {
	s := newScript(t)
	exp := t0.Add(time.Hour)
	s.at(0, connectWith("u", "phone", "s1", "tok-1", t0, exp))
	s.at(0, connectWith("u", "laptop", "s2", "tok-2", t0, exp))
	ch := s.at(time.Second, revokeToken("tok-1", exp))
	if ch.Revoked == nil || len(ch.Pending) != 1 || ch.Pending[0].Session != "s1" ||
		ch.Pending[0].Cause != eventpb.DisconnectCause_DISCONNECT_CAUSE_REVOKED || ch.Pending[0].EventID != ch.Record.ID ||
		ch.Pending[0].Reason != "stolen" || ch.Pending[0].Reconnect != eventpb.Reconnect_RECONNECT_NOT_ALLOWED {
		t.Fatalf("revocation change: %+v; want s1 pending revoked with its id", ch)
	}
	if _, ok := s.st.RevokedAt("u", "tok-1", t0, t0.Add(time.Minute)); !ok {
		t.Fatal("tok-1 not revoked")
	}
	if _, ok := s.st.RevokedAt("u", "tok-2", t0, t0.Add(time.Minute)); ok {
		t.Fatal("tok-2 revoked; want only tok-1")
	}
	// A connect with the revoked token that got through on another node.
	ch = s.at(2*time.Second, connectWith("u", "tablet", "s3", "tok-1", t0, exp))
	if len(ch.Pending) != 1 || ch.Pending[0].Session != "s3" || ch.Pending[0].Cause != eventpb.DisconnectCause_DISCONNECT_CAUSE_REVOKED {
		t.Fatalf("connect with a revoked token: %+v; want it pending revoked", ch.Pending)
	}
	// A refresh onto the revoked token likewise.
	ch = s.at(3*time.Second, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_TOKEN_REFRESHED, User: "u", Session: "s2",
		Body: &eventpb.Event_SessionTokenRefreshed{SessionTokenRefreshed: &eventpb.SessionTokenRefreshed{
			Token: &eventpb.ClientToken{Id: "tok-1", IssuedUnixNano: t0.UnixNano(), ExpiresUnixNano: exp.UnixNano()}}}})
	if len(ch.Pending) != 1 || ch.Pending[0].Session != "s2" {
		t.Fatalf("refresh onto a revoked token: %+v; want s2 pending", ch.Pending)
	}
	if got := len(stored(t, s.st).GetRevocations()); got != 1 {
		t.Fatalf("stored revocations = %d; want 1", got)
	}
	if _, ok := s.st.RevokedAt("u", "tok-1", t0, exp); ok {
		t.Fatal("revocation in force at its Until; want lapsed")
	}
	// The first record at or after the token's expiry drops it.
	s.at(time.Hour, connect("v", "d", "s9"))
	if got := stored(t, s.st).GetRevocations(); len(got) != 0 {
		t.Fatalf("stored revocations after the token expired: %v; want none", got)
	}
}

// TestRevocationIssuedBefore: a user's tokens issued before T are revoked,
// later ones are not; sessions without a token are left alone; the entry
// lapses at its Until.
func TestRevocationIssuedBefore(t *testing.T) {
	s := newScript(t)
	exp := t0.Add(time.Hour)
	s.at(0, connectWith("u", "phone", "old", "a", t0, exp))
	s.at(0, connect("u", "cli", "plain")) // no token: a revocation of tokens does not reach it
	s.at(0, connectWith("u", "tablet", "new", "b", t0.Add(10*time.Second), exp))
	ch := s.at(20*time.Second, revokeUser("u", t0.Add(5*time.Second), t0.Add(5*time.Second+time.Hour)))
	if len(ch.Pending) != 1 || ch.Pending[0].Session != "old" {
		t.Fatalf("pending = %+v; want only the session with the old token", ch.Pending)
	}
	if _, ok := s.st.RevokedAt("u", "c", t0.Add(4*time.Second), t0.Add(time.Minute)); !ok {
		t.Fatal("token issued before T not revoked")
	}
	if _, ok := s.st.RevokedAt("u", "c", t0.Add(5*time.Second), t0.Add(time.Minute)); ok {
		t.Fatal("token issued at T revoked; want only those before")
	}
	if _, ok := s.st.RevokedAt("w", "c", t0, t0.Add(time.Minute)); ok {
		t.Fatal("another user's token revoked")
	}
	// An earlier time changes nothing; a later one widens it.
	if ch := s.at(21*time.Second, revokeUser("u", t0, t0.Add(time.Hour))); ch.Revoked != nil || s.st.Counters().RevocationsNotWidening != 1 {
		t.Fatalf("earlier revocation: %+v, counters %+v; want it to change nothing", ch, s.st.Counters())
	}
	if ch := s.at(22*time.Second, revokeUser("u", t0.Add(11*time.Second), t0.Add(11*time.Second+time.Hour))); len(ch.Pending) != 1 || ch.Pending[0].Session != "new" {
		t.Fatalf("wider revocation: %+v; want the session with the newer token", ch.Pending)
	}
	s.at(2*time.Hour, connect("v", "d", "s9"))
	if got := stored(t, s.st).GetRevocations(); len(got) != 0 {
		t.Fatalf("stored revocations after they lapsed: %v; want none", got)
	}
}

// TestKickRefusesConnects: a kick with refuse_connects_ms holds the kicked
// sessions' user+device and token: a connect within it is marked kicked
// with the kick's id; another device, or after the window, is not.
func TestKickRefusesConnects(t *testing.T) {
	s := newScript(t)
	exp := t0.Add(time.Hour)
	s.at(0, connectWith("u", "phone", "s1", "tok-1", t0, exp))
	k := kick(eventpb.KickTarget_KICK_TARGET_USER, "u", "", "")
	k.GetKickRequested().Reconnect, k.GetKickRequested().ReconnectAfterMs = eventpb.Reconnect_RECONNECT_NOT_ALLOWED, 0
	k.GetKickRequested().RefuseConnectsMs = 60_000
	kch := s.at(time.Second, k)
	if f, ok := s.st.RefusalAt("u", "phone", "", t0.Add(2*time.Second)); !ok || f.EventID != kch.Record.ID || f.Reconnect != eventpb.Reconnect_RECONNECT_NOT_ALLOWED {
		t.Fatalf("refusal of u/phone: %+v %v; want the kick's", f, ok)
	}
	if _, ok := s.st.RefusalAt("u", "laptop", "tok-1", t0.Add(2*time.Second)); !ok {
		t.Fatal("the kicked session's token is not refused on another device")
	}
	if _, ok := s.st.RefusalAt("u", "laptop", "tok-9", t0.Add(2*time.Second)); ok {
		t.Fatal("another device with another token refused")
	}
	if _, ok := s.st.RefusalAt("u", "phone", "", t0.Add(61*time.Second)); ok {
		t.Fatal("refused after the window")
	}
	s.at(2*time.Second, disconnect("s1", eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED))
	ch := s.at(3*time.Second, connect("u", "phone", "s2"))
	if len(ch.Pending) != 1 || ch.Pending[0].Cause != eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED || ch.Pending[0].EventID != kch.Record.ID {
		t.Fatalf("connect within the window: %+v; want it pending kicked by the kick", ch.Pending)
	}
	if ch := s.at(4*time.Second, connect("u", "laptop", "s3")); len(ch.Pending) != 0 {
		t.Fatalf("connect on another device: %+v; want none", ch.Pending)
	}
	// Allowed advice refuses nothing, whatever the field says.
	k2 := kick(eventpb.KickTarget_KICK_TARGET_SESSION, "u", "", "s3")
	k2.GetKickRequested().Reconnect = eventpb.Reconnect_RECONNECT_ALLOWED
	k2.GetKickRequested().RefuseConnectsMs = 60_000
	s.at(5*time.Second, k2)
	if _, ok := s.st.RefusalAt("u", "laptop", "", t0.Add(6*time.Second)); ok {
		t.Fatal("a kick with reconnect allowed refuses connects")
	}
	s.at(2*time.Minute, connect("v", "d", "s9"))
	if got := stored(t, s.st).GetRefusals(); len(got) != 0 {
		t.Fatalf("stored refusals after the window: %v; want none", got)
	}
}
