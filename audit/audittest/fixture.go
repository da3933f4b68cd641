// Package audittest builds the fixture ledger that the audit and auditq
// tests (and docs/auditq.md) query: a short morning on a two-node hub with a
// superseded login, a kick and ban of a spammer, a resumed session, an idle
// timeout and an operator's abort kick. BanDamage writes a smaller ledger
// for the timeline's ban sentences across damaged records.
//
// Times are fixed; record ids (ULIDs) and hashes are not, because the
// ledger draws id entropy at random: compare output through Normalize.
package audittest

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// Start is the time of the fixture's first event.
var Start = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// Incident is when ops-bob kicked mallory (seq 8).
var Incident = Start.Add(15 * time.Minute)

// Fixture facts the tests check against.
const (
	// Events is how many records the fixture holds.
	Events = 21
	// KickSeq is the seq of ops-bob's kick of mallory.
	KickSeq = 8
)

// clock is the ledger's Now: it returns whatever the builder last set.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// Build writes the fixture ledger to path (which must not exist), with
// projection snapshots every 5 records, and closes it.
func Build(tb testing.TB, path string) {
	tb.Helper()
	if err := BuildFile(context.Background(), path); err != nil {
		tb.Fatalf("build fixture: %v", err)
	}
}

// BuildFile is Build without a testing.TB (for tools that write the
// fixture for the docs).
func BuildFile(ctx context.Context, path string) error {
	c := &clock{t: Start}
	st, err := ledger.Open(path, &ledger.Options{Now: c.now})
	if err != nil {
		return err
	}
	b := &builder{ctx: ctx, st: st, c: c}
	b.story()
	if b.err == nil {
		_, b.err = projections.WriteSnapshots(ctx, st, 5)
	}
	if cerr := st.Close(); b.err == nil {
		b.err = cerr
	}
	return b.err
}

type builder struct {
	ctx context.Context
	st  *ledger.Store
	c   *clock
	err error
}

// at appends ev at Start+d and returns its stamp.
func (b *builder) at(d time.Duration, ev *eventpb.Event) ledger.Stamp {
	if b.err != nil {
		return ledger.Stamp{}
	}
	b.c.t = Start.Add(d)
	st, err := b.st.Append(b.ctx, ev)
	if err != nil {
		b.err = err
		return ledger.Stamp{}
	}
	return st[0]
}

func ev(typ eventpb.EventType, user, device, session, node, actor, reason string) *eventpb.Event {
	return &eventpb.Event{Type: typ, User: user, Device: device, Session: session, Node: node, Actor: actor, Reason: reason}
}

func connected(user, device, session, node, addr string, supersedes ...string) *eventpb.Event {
	e := ev(eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, user, device, session, node, user, "")
	e.Body = &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{RemoteAddr: addr, HeartbeatMs: 10000, Supersedes: supersedes, Transport: transportOf(device)}}
	return e
}

// transportOf is the transport the fixture's sessions of device connect
// over: the tablet's browser over WebSocket, the rest over gRPC.
func transportOf(device string) string {
	if device == "tablet" {
		return "websocket+json"
	}
	return "grpc"
}

func disconnected(user, device, session, node, actor, reason string, d *eventpb.SessionDisconnected) *eventpb.Event {
	e := ev(eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, user, device, session, node, actor, reason)
	e.Body = &eventpb.Event_SessionDisconnected{SessionDisconnected: d}
	return e
}

const (
	cClosed     = eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED
	cKicked     = eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED
	cSuperseded = eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED
	cIdle       = eventpb.DisconnectCause_DISCONNECT_CAUSE_IDLE_TIMEOUT
	rAllowed    = eventpb.Reconnect_RECONNECT_ALLOWED
	rNot        = eventpb.Reconnect_RECONNECT_NOT_ALLOWED
	rAfter      = eventpb.Reconnect_RECONNECT_AFTER
)

func (b *builder) story() {
	m := time.Minute
	s := time.Second
	// 1-4: four users connect on two nodes.
	b.at(0, connected("alice", "phone", "s-alice-1", "node-a", "10.0.0.11:50001"))
	b.at(5*s, connected("bob", "laptop", "s-bob-1", "node-a", "10.0.0.12:50002"))
	b.at(1*m, connected("carol", "tablet", "s-carol-1", "node-b", "10.0.0.13:50003"))
	b.at(5*m, connected("mallory", "pc", "s-mallory-1", "node-b", "203.0.113.7:40000"))
	// 5: a notification to alice.
	n := ev(eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, "alice", "", "", "node-a", "ops-olga", "")
	n.Body = &eventpb.Event_NotificationSent{NotificationSent: &eventpb.NotificationSent{Target: eventpb.NotificationTarget_NOTIFICATION_TARGET_USER, Topic: "maintenance", Payload: []byte(`{"at":"12:00"}`)}}
	b.at(7*m, n)
	// 6-7: alice logs in on her laptop; single-device login supersedes the phone.
	b.at(10*m, connected("alice", "laptop", "s-alice-2", "node-a", "10.0.0.21:50010", "s-alice-1"))
	b.at(10*m+s, disconnected("alice", "phone", "s-alice-1", "node-a", "system", "single-device login",
		&eventpb.SessionDisconnected{Cause: cSuperseded, SupersededBy: "s-alice-2", Reconnect: rNot}))
	// 8-9: the incident: ops-bob kicks every session of mallory.
	k := ev(eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, "mallory", "", "", "node-a", "ops-bob", "spamming the lobby")
	k.Body = &eventpb.Event_KickRequested{KickRequested: &eventpb.KickRequested{Target: eventpb.KickTarget_KICK_TARGET_USER,
		Mode: eventpb.KickMode_KICK_MODE_GRACEFUL, Reconnect: rAfter, ReconnectAfterMs: 600000}}
	kick := b.at(15*m, k)
	b.at(15*m+s, disconnected("mallory", "pc", "s-mallory-1", "node-b", "ops-bob", "spamming the lobby",
		&eventpb.SessionDisconnected{Cause: cKicked, CauseEventId: kick.ID[:], Reconnect: rAfter, ReconnectAfterMs: 600000}))
	// 10-11: ops-bob bans mallory for a day; her next attempts are refused.
	bn := ev(eventpb.EventType_EVENT_TYPE_USER_BANNED, "mallory", "", "", "node-a", "ops-bob", "repeated spam after warnings")
	bn.Body = &eventpb.Event_UserBanned{UserBanned: &eventpb.UserBanned{UntilUnixNano: Start.Add(24*time.Hour + 15*m + 30*s).UnixNano()}}
	b.at(15*m+30*s, bn)
	rj := ev(eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED, "mallory", "pc", "", "node-b", "system", "banned until 2026-03-02T10:15:30Z")
	rj.Body = &eventpb.Event_ConnectRejected{ConnectRejected: &eventpb.ConnectRejected{Code: "banned", Count: 3, RemoteAddr: "203.0.113.7:40001"}}
	b.at(16*m, rj)
	// 12-13: bob's laptop drops; he resumes as s-bob-2.
	b.at(20*m, disconnected("bob", "laptop", "s-bob-1", "node-a", "bob", "wifi lost",
		&eventpb.SessionDisconnected{Cause: cClosed, Reconnect: rAllowed}))
	r := ev(eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED, "bob", "laptop", "s-bob-2", "node-b", "bob", "")
	r.Body = &eventpb.Event_SessionReconnected{SessionReconnected: &eventpb.SessionReconnected{PreviousSession: "s-bob-1", LastAckedSeq: 0, RemoteAddr: "10.0.0.12:50020", HeartbeatMs: 10000, Transport: "grpc"}}
	b.at(21*m, r)
	// 14: carol goes quiet.
	b.at(30*m, disconnected("carol", "tablet", "s-carol-1", "node-b", "system", "no heartbeat for 30s",
		&eventpb.SessionDisconnected{Cause: cIdle, Reconnect: rAllowed}))
	// 15-16: ops-olga throws bob's session out at once.
	k2 := ev(eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, "bob", "laptop", "s-bob-2", "node-a", "ops-olga", "account under review")
	k2.Body = &eventpb.Event_KickRequested{KickRequested: &eventpb.KickRequested{Target: eventpb.KickTarget_KICK_TARGET_SESSION,
		Mode: eventpb.KickMode_KICK_MODE_ABORT, Reconnect: rNot}}
	kick2 := b.at(40*m, k2)
	b.at(40*m+s/2, disconnected("bob", "laptop", "s-bob-2", "node-b", "ops-olga", "account under review",
		&eventpb.SessionDisconnected{Cause: cKicked, CauseEventId: kick2.ID[:], Reconnect: rNot}))
	// 17-18: mallory appeals; ops-olga lifts the ban and she is back.
	b.at(60*m, ev(eventpb.EventType_EVENT_TYPE_USER_UNBANNED, "mallory", "", "", "node-a", "ops-olga", "appeal accepted"))
	b.at(65*m, connected("mallory", "pc", "s-mallory-2", "node-b", "203.0.113.7:40002"))
	// 19-21: dave comes and goes; a broadcast.
	b.at(70*m, connected("dave", "phone", "s-dave-1", "node-a", "10.0.0.31:50030"))
	all := ev(eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, "", "", "", "node-a", "ops-olga", "")
	all.Body = &eventpb.Event_NotificationSent{NotificationSent: &eventpb.NotificationSent{Target: eventpb.NotificationTarget_NOTIFICATION_TARGET_ALL, Topic: "maintenance", Payload: []byte(`{"at":"12:00","now":true}`)}}
	b.at(75*m, all)
	b.at(80*m, disconnected("dave", "phone", "s-dave-1", "node-a", "dave", "",
		&eventpb.SessionDisconnected{Cause: cClosed, Reconnect: rAllowed}))
}

var (
	ulidRE = regexp.MustCompile(`\b[0-9A-HJKMNP-TV-Z]{26}\b`)
	hashRE = regexp.MustCompile(`\b[0-9a-f]{64}\b`)
)

// Normalize replaces the run-dependent parts of auditq output, record ids
// and hashes, by placeholders of the same width numbered in order of first
// appearance, so that tables keep their alignment and equal ids stay equal.
func Normalize(s string) string {
	ids := map[string]string{}
	s = ulidRE.ReplaceAllStringFunc(s, func(m string) string {
		if r, ok := ids[m]; ok {
			return r
		}
		r := placeholder("ID", len(ids)+1, len(m))
		ids[m] = r
		return r
	})
	hashes := map[string]string{}
	return hashRE.ReplaceAllStringFunc(s, func(m string) string {
		if r, ok := hashes[m]; ok {
			return r
		}
		r := placeholder("HASH", len(hashes)+1, len(m))
		hashes[m] = r
		return r
	})
}

func placeholder(kind string, n, width int) string {
	p := fmt.Sprintf("<%s%04d", kind, n)
	return p + strings.Repeat("_", max(width-len(p)-1, 0)) + ">"
}
