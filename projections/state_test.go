package projections_test

import (
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
	"github.com/sessionledger/sessionledger/projections/projpb"
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
	s.at(time.Second, connect("v", "d", "s2"))
	s.at(time.Second, ban("w", t0.Add(time.Hour), "abuse"))
	before := mustMarshal(t, s.st)
	s.at(2*time.Second, disconnect("s1", eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST))
	s.at(3*time.Second, disconnect("never", eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST))
	s.at(4*time.Second, &eventpb.Event{Type: eventpb.EventType(77), User: "u", Session: "s1"})
	s.at(5*time.Second, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED}) // no session, no user
	s.at(6*time.Second, connect("v", "d", "s2"))                                              // already live
	s.at(7*time.Second, unban("nobody"))
	s.at(8*time.Second, kick(eventpb.KickTarget_KICK_TARGET_USER, "nobody", "", ""))
	s.at(9*time.Second, ban("w", t0.Add(time.Second), "late"))        // expired on arrival
	s.at(10*time.Second, ban("w", t0.Add(30*time.Minute), "shorter")) // ends before the ban in force
	c := s.st.Counters()
	want := projections.Counters{Applied: 13, DuplicateTerminals: 1, UnknownSessions: 1, UnknownTypes: 1, Malformed: 1, DuplicateConnects: 1,
		UnbanNotBanned: 1, KicksMissed: 1, BansExpiredOnArrival: 1, BansNotExtending: 1}
	if c != want {
		t.Fatalf("counters = %+v; want %+v", c, want)
	}
	// Nothing but the counters and the position changed.
	strip := func(b []byte) *projpb.Snapshot {
		var pb projpb.Snapshot
		if err := proto.Unmarshal(b, &pb); err != nil {
			t.Fatal(err)
		}
		pb.Counters, pb.Seq, pb.TimeUnixNano = nil, 0, 0
		return &pb
	}
	if got, want := strip(mustMarshal(t, s.st)), strip(before); !proto.Equal(got, want) {
		t.Fatalf("anomalies changed the state:\ngot  %v\nwant %v", got, want)
	}
}

// A session that connects while its user is banned is marked like the
// sessions the ban found live: the hub checks the ban before it records a
// connect, but the ban can be recorded in between.
func TestConnectDuringBanIsMarked(t *testing.T) {
	s := newScript(t)
	forever := s.at(0, ban("u", time.Time{}, "forever"))
	ch := s.at(time.Second, connect("u", "d", "s1"))
	if ch.Started == nil || len(ch.Pending) != 1 {
		t.Fatalf("connect during a ban: started %v, pending %+v; want started and marked", ch.Started, ch.Pending)
	}
	p := ch.Pending[0]
	if p.Session != "s1" || p.Cause != eventpb.DisconnectCause_DISCONNECT_CAUSE_BANNED || p.EventID != forever.Record.ID || p.Seq != forever.Seq ||
		p.Reconnect != eventpb.Reconnect_RECONNECT_NOT_ALLOWED || p.Reason != "forever" || !p.At.Equal(t0.Add(time.Second)) {
		t.Fatalf("pending = %+v; want s1 banned by seq %d, not allowed to reconnect, due at the connect", p, forever.Seq)
	}
	if got, ok := s.st.Pending("s1"); !ok || got != p {
		t.Fatalf("state pending = %+v, %v; want %+v", got, ok, p)
	}

	// A timed ban: reconnect after what is left of it at the connect. A
	// resume (session_reconnected) is a connect too.
	s.at(2*time.Second, ban("v", t0.Add(time.Minute), "a minute"))
	ch = s.at(12*time.Second, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED, User: "v", Device: "d", Session: "s2", Node: "n1",
		Body: &eventpb.Event_SessionReconnected{SessionReconnected: &eventpb.SessionReconnected{PreviousSession: "s0"}}})
	if len(ch.Pending) != 1 || ch.Pending[0].Reconnect != eventpb.Reconnect_RECONNECT_AFTER || ch.Pending[0].ReconnectAfter != 48*time.Second {
		t.Fatalf("pending = %+v; want s2 to reconnect after 48s", ch.Pending)
	}

	// Not once the ban expired (exactly at Until) or was lifted.
	if ch := s.at(time.Minute, connect("v", "d", "s3")); len(ch.Pending) != 0 {
		t.Fatalf("connect at the ban's expiry: pending %+v; want none", ch.Pending)
	}
	s.at(61*time.Second, unban("u"))
	if ch := s.at(62*time.Second, connect("u", "d", "s4")); len(ch.Pending) != 0 {
		t.Fatalf("connect after an unban: pending %+v; want none", ch.Pending)
	}
}

// A ban recorded after its expiry changes nothing: above all, it does not
// lift a ban in force.
func TestBanExpiredOnArrivalKeepsBanInForce(t *testing.T) {
	s := newScript(t)
	s.at(0, ban("u", time.Time{}, "forever"))
	s.at(0, connect("u", "d", "s1"))
	for _, until := range []time.Time{t0.Add(500 * time.Millisecond), t0.Add(time.Second)} { // before, and exactly at the record's time
		ch := s.at(time.Second, ban("u", until, "late"))
		if ch.Banned != nil || ch.Unbanned != nil || len(ch.Expired) != 0 || len(ch.Pending) != 0 || ch.Anomaly == "" {
			t.Fatalf("late ban until %s: change %+v; want only an anomaly", until, ch)
		}
		if b, ok := s.st.BanAt("u", t0.Add(time.Hour)); !ok || b.Reason != "forever" {
			t.Fatalf("ban after a late one = %+v, %v; want the permanent ban still in force", b, ok)
		}
	}
	if got := s.st.Counters().BansExpiredOnArrival; got != 2 {
		t.Fatalf("BansExpiredOnArrival = %d; want 2", got)
	}
	if p, ok := s.st.Pending("s1"); !ok || p.Reason != "forever" {
		t.Fatalf("s1 pending = %+v, %v; want the permanent ban's", p, ok)
	}
	// Without a ban in force it is counted the same way and bans nobody.
	s.at(2*time.Second, ban("v", t0, "late"))
	if _, ok := s.st.BanAt("v", t0.Add(2*time.Second)); ok {
		t.Fatal("a ban recorded after its expiry is in force")
	}
}

// Ban during a ban: the later end wins, whichever comes first, and an
// unban lifts the ban in force.
func TestBanDuringBanLaterEndWins(t *testing.T) {
	hour, minute := t0.Add(time.Hour), t0.Add(time.Minute)
	for _, tc := range []struct {
		name          string
		first, second time.Time // zero: no expiry
		wantUntil     time.Time
		wantReason    string
	}{
		{"permanent then timed", time.Time{}, minute, time.Time{}, "first"},
		{"timed then permanent", minute, time.Time{}, time.Time{}, "second"},
		{"long then short", hour, minute, hour, "first"},
		{"short then long", minute, hour, hour, "second"},
		{"same end", minute, minute, minute, "first"},
		{"permanent twice", time.Time{}, time.Time{}, time.Time{}, "first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScript(t)
			first := s.at(0, ban("u", tc.first, "first"))
			ch := s.at(time.Second, ban("u", tc.second, "second"))
			extends := tc.wantReason == "second"
			if (ch.Banned != nil) != extends || (ch.Anomaly == "") != extends {
				t.Fatalf("second ban: banned %+v anomaly %q; want banned=%v", ch.Banned, ch.Anomaly, extends)
			}
			b, ok := s.st.BanAt("u", t0.Add(2*time.Second))
			if !ok || !b.Until.Equal(tc.wantUntil) || b.Reason != tc.wantReason || !b.Since.Equal(t0) {
				t.Fatalf("ban = %+v, %v; want until %s, reason %s, since the first ban", b, ok, tc.wantUntil, tc.wantReason)
			}
			if !extends && b.EventID != first.Record.ID {
				t.Fatalf("ban event = %s; want the first ban's %s", b.EventID, first.Record.ID)
			}
			// Past the shorter end the ban is still in force.
			later := t0.Add(2 * time.Minute)
			if _, ok := s.st.BanAt("u", later); ok != (tc.wantUntil.IsZero() || tc.wantUntil.After(later)) {
				t.Fatalf("banned at +2m = %v; want %v", ok, !ok)
			}
			// An unban lifts whichever ban is in force.
			if ch := s.at(2*time.Second, unban("u")); ch.Unbanned == nil || ch.Unbanned.Reason != tc.wantReason {
				t.Fatalf("unban: %+v; want the ban in force lifted", ch.Unbanned)
			}
			if _, ok := s.st.BanAt("u", t0.Add(3*time.Second)); ok {
				t.Fatal("banned after the unban")
			}
		})
	}
}

// An unbanned ban's expiry must not lift a later ban of the same user.
func TestExpiryOfLiftedBanKeepsLaterBan(t *testing.T) {
	s := newScript(t)
	s.at(0, ban("u", t0.Add(10*time.Second), "a"))
	s.at(time.Second, unban("u"))
	s.at(2*time.Second, ban("u", t0.Add(20*time.Second), "b"))
	if ch := s.at(10*time.Second, connect("x", "d", "s1")); len(ch.Expired) != 0 {
		t.Fatalf("expired at +10s = %+v; want none", ch.Expired)
	}
	if b, ok := s.st.BanAt("u", t0.Add(11*time.Second)); !ok || b.Reason != "b" {
		t.Fatalf("ban at +11s = %+v, %v; want b in force", b, ok)
	}
	if ch := s.at(20*time.Second, connect("x", "d", "s2")); len(ch.Expired) != 1 || ch.Expired[0].Reason != "b" {
		t.Fatalf("expired at +20s = %+v; want b", ch.Expired)
	}
}

func TestUnmarshalStateRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{[]byte("garbage"), {0x08, projections.SnapshotVersion - 1}, {0x08, projections.SnapshotVersion + 1}, nil} {
		if _, err := projections.UnmarshalState(b); err == nil {
			t.Fatalf("UnmarshalState(%q) = nil error; want ErrBadSnapshot", b)
		}
	}
}
