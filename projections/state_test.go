package projections_test

import (
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// script applies hand-written events at explicit times.
type script struct {
	t   *testing.T
	st  *projections.State
	seq uint64
}

func newScript(t *testing.T) *script { return &script{t: t, st: projections.New()} }

func (s *script) at(d time.Duration, ev *eventpb.Event) projections.Change {
	s.seq++
	var id ulid.ULID
	_ = id.SetTime(uint64(t0.Add(d).UnixMilli()))
	id[15] = byte(s.seq)
	return s.st.Apply(&ledger.Record{Seq: s.seq, ID: id, Time: t0.Add(d), Topic: ledger.EventsTopic, Event: ev})
}

func connect(user, device, session string, supersedes ...string) *eventpb.Event {
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: user, Device: device, Session: session, Node: "n1", Actor: user,
		Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{Supersedes: supersedes}}}
}

func disconnect(session string, cause eventpb.DisconnectCause) *eventpb.Event {
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, Session: session,
		Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: &eventpb.SessionDisconnected{Cause: cause}}}
}

func ban(user string, until time.Time, reason string) *eventpb.Event {
	var u int64
	if !until.IsZero() {
		u = until.UnixNano()
	}
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_BANNED, User: user, Actor: "ops", Reason: reason,
		Body: &eventpb.Event_UserBanned{UserBanned: &eventpb.UserBanned{UntilUnixNano: u}}}
}

func unban(user string) *eventpb.Event {
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_UNBANNED, User: user, Actor: "ops",
		Body: &eventpb.Event_UserUnbanned{UserUnbanned: &eventpb.UserUnbanned{}}}
}

func kick(target eventpb.KickTarget, user, device, session string) *eventpb.Event {
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, User: user, Device: device, Session: session, Actor: "ops", Reason: "spam",
		Body: &eventpb.Event_KickRequested{KickRequested: &eventpb.KickRequested{Target: target, Mode: eventpb.KickMode_KICK_MODE_ABORT,
			Reconnect: eventpb.Reconnect_RECONNECT_AFTER, ReconnectAfterMs: 5000}}}
}

func TestBanExpiresExactlyAtUntil(t *testing.T) {
	s := newScript(t)
	until := t0.Add(10 * time.Second)
	s.at(0, ban("u", until, "abuse"))
	if _, ok := s.st.BanAt("u", until.Add(-time.Nanosecond)); !ok {
		t.Fatal("ban not in force just before its expiry")
	}
	if _, ok := s.st.BanAt("u", until); ok {
		t.Fatal("ban still in force exactly at its expiry; want lifted at Until")
	}
	// The next record at exactly Until lifts it in the state, without an event.
	ch := s.at(10*time.Second, connect("u", "d", "s1"))
	if len(ch.Expired) != 1 || ch.Expired[0].User != "u" {
		t.Fatalf("expired = %+v; want the ban of u", ch.Expired)
	}
	if got := s.st.Counters().BansExpired; got != 1 {
		t.Fatalf("BansExpired = %d; want 1", got)
	}
	if bans := s.st.Bans(until.Add(-time.Second)); len(bans) != 0 {
		t.Fatalf("bans after expiry was applied = %+v; want none", bans)
	}
}

func TestBanDuringBanExtends(t *testing.T) {
	s := newScript(t)
	s.at(0, ban("u", t0.Add(10*time.Second), "first"))
	ch := s.at(5*time.Second, ban("u", t0.Add(time.Hour), "second"))
	if ch.Banned == nil || ch.Banned.Reason != "second" {
		t.Fatalf("banned = %+v; want the second ban", ch.Banned)
	}
	b, ok := s.st.BanAt("u", t0.Add(30*time.Second))
	if !ok {
		t.Fatal("extended ban not in force after the first ban's expiry")
	}
	if !b.Since.Equal(t0) || !b.Until.Equal(t0.Add(time.Hour)) || b.Reason != "second" {
		t.Fatalf("ban = %+v; want since %s (the first ban), until +1h, reason second", b, t0)
	}
	// The first ban's expiry must not lift the extension.
	if ch := s.at(20*time.Second, connect("x", "d", "s1")); len(ch.Expired) != 0 {
		t.Fatalf("expired = %+v; want none (the ban was extended)", ch.Expired)
	}
	if _, ok := s.st.BanAt("u", t0.Add(20*time.Second)); !ok {
		t.Fatal("extension lifted by the first ban's expiry")
	}
}

func TestUnbanOfUserNotBanned(t *testing.T) {
	s := newScript(t)
	ch := s.at(0, unban("nobody"))
	if ch.Anomaly == "" || s.st.Counters().UnbanNotBanned != 1 {
		t.Fatalf("unban of a user who is not banned: anomaly %q, counter %d; want counted", ch.Anomaly, s.st.Counters().UnbanNotBanned)
	}
	s.at(time.Second, ban("u", time.Time{}, "forever"))
	if ch := s.at(2*time.Second, unban("u")); ch.Unbanned == nil {
		t.Fatal("unban of a banned user did not report it")
	}
	if _, ok := s.st.BanAt("u", t0.Add(time.Hour)); ok {
		t.Fatal("user still banned after unban")
	}
}

func TestBanEndsLiveSessionsOfUser(t *testing.T) {
	s := newScript(t)
	s.at(0, connect("u", "phone", "s1"))
	s.at(0, connect("u", "laptop", "s2"))
	s.at(0, connect("v", "phone", "s3"))
	ch := s.at(time.Second, ban("u", t0.Add(time.Minute), "abuse"))
	if len(ch.Pending) != 2 {
		t.Fatalf("pending = %+v; want s1 and s2", ch.Pending)
	}
	for _, p := range ch.Pending {
		if p.Cause != eventpb.DisconnectCause_DISCONNECT_CAUSE_BANNED || p.Reconnect != eventpb.Reconnect_RECONNECT_AFTER || p.ReconnectAfter != 59*time.Second {
			t.Fatalf("pending = %+v; want banned, reconnect after 59s", p)
		}
	}
	if _, ok := s.st.Pending("s3"); ok {
		t.Fatal("another user's session was marked")
	}
}

func TestKickTargets(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   *eventpb.Event
		want []string
	}{
		{"session", kick(eventpb.KickTarget_KICK_TARGET_SESSION, "", "", "s2"), []string{"s2"}},
		{"user", kick(eventpb.KickTarget_KICK_TARGET_USER, "u", "", ""), []string{"s1", "s2"}},
		{"user+device", kick(eventpb.KickTarget_KICK_TARGET_USER_DEVICE, "u", "laptop", ""), []string{"s2"}},
		{"missed", kick(eventpb.KickTarget_KICK_TARGET_USER, "nobody", "", ""), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScript(t)
			s.at(0, connect("u", "phone", "s1"))
			s.at(0, connect("u", "laptop", "s2"))
			s.at(0, connect("v", "laptop", "s3"))
			ch := s.at(time.Second, tc.ev)
			var got []string
			for _, p := range ch.Pending {
				got = append(got, p.Session)
				if p.Cause != eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED || p.Mode != eventpb.KickMode_KICK_MODE_ABORT || p.Actor != "ops" || p.Reason != "spam" || p.ReconnectAfter != 5*time.Second {
					t.Fatalf("pending = %+v", p)
				}
			}
			if len(got) != len(tc.want) || (len(got) > 0 && !equalStrings(got, tc.want)) {
				t.Fatalf("pending sessions = %v; want %v", got, tc.want)
			}
			if tc.want == nil && s.st.Counters().KicksMissed != 1 {
				t.Fatal("a kick that matched nothing was not counted")
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSingleDevicePolicy(t *testing.T) {
	s := newScript(t)
	s.at(0, connect("u", "phone", "s1"))
	s.at(time.Second, connect("u", "laptop", "s2"))

	onePerDevice := projections.Policy{OnePerDevice: true}
	if got := s.st.Supersedes(onePerDevice, "u", "phone"); !equalStrings(got, []string{"s1"}) {
		t.Fatalf("one per device, new phone login supersedes %v; want [s1]", got)
	}
	if got := s.st.Supersedes(onePerDevice, "u", "tablet"); len(got) != 0 {
		t.Fatalf("one per device, new tablet login supersedes %v; want none", got)
	}
	if got := s.st.Supersedes(projections.Policy{MaxPerUser: 1}, "u", "tablet"); !equalStrings(got, []string{"s1", "s2"}) {
		t.Fatalf("max 1 per user supersedes %v; want [s1 s2]", got)
	}
	if got := s.st.Supersedes(projections.Policy{MaxPerUser: 2}, "u", "tablet"); !equalStrings(got, []string{"s1"}) {
		t.Fatalf("max 2 per user supersedes %v; want the oldest, [s1]", got)
	}
	if got := s.st.Supersedes(projections.Policy{}, "u", "phone"); len(got) != 0 {
		t.Fatalf("no policy supersedes %v; want none", got)
	}

	ch := s.at(2*time.Second, connect("u", "phone", "s3", "s1"))
	if len(ch.Pending) != 1 || ch.Pending[0].Session != "s1" || ch.Pending[0].SupersededBy != "s3" ||
		ch.Pending[0].Cause != eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED {
		t.Fatalf("pending = %+v; want s1 superseded by s3", ch.Pending)
	}
	// s1 is on its way out: a further login does not count it again.
	if got := s.st.Supersedes(projections.Policy{MaxPerUser: 2}, "u", "tablet"); !equalStrings(got, []string{"s2"}) {
		t.Fatalf("after s1 was superseded, max 2 supersedes %v; want [s2]", got)
	}
	// A later kick does not replace the first cause.
	s.at(3*time.Second, kick(eventpb.KickTarget_KICK_TARGET_USER, "u", "", ""))
	if p, _ := s.st.Pending("s1"); p.Cause != eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED {
		t.Fatalf("s1 pending cause = %v; want superseded (first cause wins)", p.Cause)
	}
	ch = s.at(4*time.Second, disconnect("s1", eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED))
	if ch.Ended == nil || ch.Ended.ID != "s1" {
		t.Fatalf("ended = %+v; want s1", ch.Ended)
	}
	if _, ok := s.st.Pending("s1"); ok {
		t.Fatal("pending end outlived its session")
	}
}

func TestAnomaliesAreCountedNotApplied(t *testing.T) {
	s := newScript(t)
	s.at(0, connect("u", "d", "s1"))
	s.at(time.Second, disconnect("s1", eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED))
	before, _ := s.st.MarshalBinary()
	s.at(2*time.Second, disconnect("s1", eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST))
	s.at(3*time.Second, disconnect("never", eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST))
	s.at(4*time.Second, &eventpb.Event{Type: eventpb.EventType(77), User: "u", Session: "s1"})
	s.at(5*time.Second, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED}) // no session, no user
	c := s.st.Counters()
	if c.DuplicateTerminals != 1 || c.UnknownSessions != 1 || c.UnknownTypes != 1 || c.Malformed != 1 {
		t.Fatalf("counters = %+v; want one duplicate terminal, unknown session, unknown type and malformed", c)
	}
	if s.st.Live() != 0 {
		t.Fatalf("live = %d; want 0", s.st.Live())
	}
	after, _ := s.st.MarshalBinary()
	a, _ := projections.UnmarshalState(after)
	b, _ := projections.UnmarshalState(before)
	if a.Live() != b.Live() || len(a.Bans(t0)) != len(b.Bans(t0)) {
		t.Fatal("anomalies changed the table")
	}
}

func TestUnmarshalStateRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{[]byte("garbage"), {0x08, 0x02}, nil} {
		if _, err := projections.UnmarshalState(b); err == nil {
			t.Fatalf("UnmarshalState(%q) = nil error; want ErrBadSnapshot", b)
		}
	}
}
