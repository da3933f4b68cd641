package projections_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
	"github.com/sessionledger/sessionledger/projections"
)

// benchGenVersion names the generator's output in cached file names: bump it
// whenever hubGen changes what it writes or the ledger its file format
// (3: main's posting-block indexes).
const benchGenVersion = 3

// benchStep is the clock step of generated ledgers: 10M events span ~28h.
const benchStep = 10 * time.Millisecond

// benchLedger describes a generated ledger.
type benchLedger struct {
	events   int    // records in the log
	live     int    // live sessions the generator steers towards
	users    int    // distinct users
	snapshot uint64 // periodic snapshot distance; 0: none written
}

// path names the cached file after the generator's version and, for a
// ledger with snapshots, the snapshot format's: a snapshot of another
// SnapshotVersion is skipped, so a stale cache would time replays instead.
func (p benchLedger) path() string {
	snap := fmt.Sprintf("snap%d", p.snapshot)
	if p.snapshot > 0 {
		snap += fmt.Sprintf("-sv%d", projections.SnapshotVersion)
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("sessionledger-bench-v%d-n%d-live%d-users%d-%s.db",
		benchGenVersion, p.events, p.live, p.users, snap))
}

// openBenchLedger opens the generated ledger p read-only, generating it
// first if no complete one is cached under os.TempDir(). A half-written
// file never has the final name: generation writes a temporary file and
// renames it once the head and the snapshots are in place.
func openBenchLedger(b *testing.B, p benchLedger) *ledger.Store {
	b.Helper()
	path := p.path()
	if s, err := ledger.Open(path, &ledger.Options{ReadOnly: true}); err == nil {
		if s.Head().Seq == uint64(p.events) {
			return s
		}
		_ = s.Close()
		b.Logf("%s: head %d, want %d: generating again", path, s.Head().Seq, p.events)
	} else if !errors.Is(err, fs.ErrNotExist) {
		b.Logf("%s: %v: generating again", path, err)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	_ = os.Remove(tmp)
	start := time.Now()
	if err := generateBenchLedger(tmp, p); err != nil {
		_ = os.Remove(tmp)
		b.Fatalf("generate %s: %v", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %s in %s", path, time.Since(start).Round(time.Second))
	s, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func generateBenchLedger(path string, p benchLedger) error {
	s, err := ledger.Open(path, &ledger.Options{Now: ledgertest.FixedClock(t0, benchStep)})
	if err != nil {
		return err
	}
	defer s.Close()
	ctx := context.Background()
	g := newHubGen(1, p.users, p.live)
	const batch = 8192
	evs := make([]*eventpb.Event, 0, batch)
	for i := 0; i < p.events; i++ {
		evs = append(evs, g.next())
		if len(evs) == batch || i == p.events-1 {
			if _, err := s.Append(ctx, evs...); err != nil {
				return err
			}
			evs = evs[:0]
		}
	}
	if p.snapshot > 0 {
		if _, err := projections.WriteSnapshots(ctx, s, p.snapshot); err != nil {
			return err
		}
	}
	return s.Close()
}

// hubGen writes the events a busy hub would: connects (some of them
// reconnects, some superseding the user's session on the same device),
// disconnects, many notifications, rejected connects, kicks, bans and
// unbans, with live sessions steered towards a target. It mirrors what the
// hub would enforce: kicked, banned and superseded sessions get their
// session_disconnected event soon after. Event times are the ledger's
// fixed clock: t0 + (seq-1)*benchStep.
type hubGen struct {
	rnd   *rand.Rand
	users int
	want  int // live sessions to steer towards
	seq   uint64

	live    []genSession
	liveIdx map[string]int    // session id -> index in live
	byDev   map[string]string // user/device -> live session id
	ending  []genEnd          // sessions the hub is about to end
	banned  map[string]int64  // user -> until (0: none)
	bannedL []string          // banned users, for unbans
	lastEnd []string          // recently ended sessions, for reconnects
	nextSes uint64
	pad     []byte
}

type genSession struct {
	id, user, device, node string
}

type genEnd struct {
	id    string
	cause eventpb.DisconnectCause
	by    string
}

func newHubGen(seed uint64, users, live int) *hubGen {
	g := &hubGen{
		rnd:     rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)),
		users:   users,
		want:    live,
		liveIdx: make(map[string]int),
		byDev:   make(map[string]string),
		banned:  make(map[string]int64),
	}
	g.pad = make([]byte, 256)
	for i := range g.pad {
		g.pad[i] = 'a' + byte(i%26)
	}
	return g
}

var (
	genDevices = []string{"ios-7f3a9c21", "android-5b11e0d4", "web-chrome-2e8f"}
	genNodes   = []string{"hubd-01.eu-west", "hubd-02.eu-west", "hubd-03.us-east", "hubd-04.us-east"}
)

func (g *hubGen) now() time.Time { return t0.Add(time.Duration(g.seq-1) * benchStep) }

func (g *hubGen) user() string { return fmt.Sprintf("user-%07d", g.rnd.IntN(g.users)) }

func (g *hubGen) addr() string {
	return fmt.Sprintf("203.0.%d.%d:%d", g.rnd.IntN(256), g.rnd.IntN(256), 1024+g.rnd.IntN(60000))
}

// sessionID is a ULID string: session ids grow with time, as the hub's do.
func (g *hubGen) sessionID() string {
	g.nextSes++
	var id ulid.ULID
	_ = id.SetTime(uint64(g.now().UnixMilli()))
	binary.BigEndian.PutUint64(id[8:], g.nextSes*0x9e3779b97f4a7c15)
	return id.String()
}

// next returns the next event.
func (g *hubGen) next() *eventpb.Event {
	g.seq++
	if len(g.ending) > 0 && g.rnd.IntN(3) == 0 {
		e := g.ending[0]
		g.ending = g.ending[1:]
		if _, ok := g.liveIdx[e.id]; ok {
			return g.disconnect(e.id, e.cause, e.by)
		}
	}
	switch p := g.rnd.IntN(1000); {
	case p < 500 || len(g.live) == 0:
		// Steer towards the target: connects and disconnects balance
		// there, less the sessions kicks, bans and supersedes end.
		pc := 0.5 + 4*float64(g.want-len(g.live))/float64(g.want)
		if len(g.live) == 0 || g.rnd.Float64() < pc {
			return g.connect()
		}
		s := g.live[g.rnd.IntN(len(g.live))]
		cause := eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED
		if g.rnd.IntN(5) == 0 {
			cause = eventpb.DisconnectCause(5 + g.rnd.IntN(3)) // idle, shutdown, lost
		}
		return g.disconnect(s.id, cause, "")
	case p < 940:
		return g.notification()
	case p < 965:
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED, User: g.user(), Device: genDevices[g.rnd.IntN(3)],
			Node: genNodes[g.rnd.IntN(len(genNodes))], Actor: "system", Reason: "rate limited: too many connect attempts",
			Body: &eventpb.Event_ConnectRejected{ConnectRejected: &eventpb.ConnectRejected{Code: "rate_limited", Count: uint32(1 + g.rnd.IntN(20)), RemoteAddr: g.addr()}}}
	case p < 988:
		return g.kick()
	case p < 996:
		return g.ban()
	default:
		return g.unban()
	}
}

func (g *hubGen) connect() *eventpb.Event {
	user := g.user()
	dev := genDevices[g.rnd.IntN(3)]
	node := genNodes[g.rnd.IntN(len(genNodes))]
	if until, ok := g.banned[user]; ok && (until == 0 || until > g.now().UnixNano()) {
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED, User: user, Device: dev, Node: node, Actor: "system", Reason: "user is banned",
			Body: &eventpb.Event_ConnectRejected{ConnectRejected: &eventpb.ConnectRejected{Code: "banned", Count: 1, RemoteAddr: g.addr()}}}
	}
	id := g.sessionID()
	var sup []string
	if old, ok := g.byDev[user+"/"+dev]; ok {
		// One session per user and device: the new one supersedes the old.
		sup = []string{old}
		g.ending = append(g.ending, genEnd{id: old, cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED, by: id})
	}
	g.liveIdx[id] = len(g.live)
	g.live = append(g.live, genSession{id: id, user: user, device: dev, node: node})
	g.byDev[user+"/"+dev] = id
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: user, Device: dev, Session: id, Node: node, Actor: user,
		Reason: "client hello v2.14.1"}
	if len(g.lastEnd) > 0 && g.rnd.IntN(8) == 0 {
		prev := g.lastEnd[g.rnd.IntN(len(g.lastEnd))]
		ev.Type = eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED
		ev.Body = &eventpb.Event_SessionReconnected{SessionReconnected: &eventpb.SessionReconnected{
			PreviousSession: prev, LastAckedSeq: g.seq - uint64(g.rnd.IntN(1000)), RemoteAddr: g.addr(), HeartbeatMs: 15000, Supersedes: sup}}
		return ev
	}
	ev.Body = &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{RemoteAddr: g.addr(), HeartbeatMs: 15000, Supersedes: sup}}
	return ev
}

func (g *hubGen) disconnect(id string, cause eventpb.DisconnectCause, by string) *eventpb.Event {
	i := g.liveIdx[id]
	s := g.live[i]
	last := len(g.live) - 1
	g.live[i] = g.live[last]
	g.liveIdx[g.live[i].id] = i
	g.live = g.live[:last]
	delete(g.liveIdx, id)
	if g.byDev[s.user+"/"+s.device] == id {
		delete(g.byDev, s.user+"/"+s.device)
	}
	if len(g.lastEnd) < 1024 {
		g.lastEnd = append(g.lastEnd, id)
	} else {
		g.lastEnd[g.rnd.IntN(len(g.lastEnd))] = id
	}
	d := &eventpb.SessionDisconnected{Cause: cause, Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED, SupersededBy: by}
	if cause == eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED || cause == eventpb.DisconnectCause_DISCONNECT_CAUSE_BANNED {
		d.CauseEventId = make([]byte, 16) // the generator does not know the ledger's ids
		binary.BigEndian.PutUint64(d.CauseEventId[8:], g.seq)
	}
	actor := s.user
	if cause != eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED {
		actor = "system"
	}
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, User: s.user, Device: s.device, Session: id, Node: s.node,
		Actor: actor, Reason: "stream closed: " + cause.String(), Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: d}}
}

func (g *hubGen) notification() *eventpb.Event {
	n := &eventpb.NotificationSent{Target: eventpb.NotificationTarget_NOTIFICATION_TARGET_USER, Topic: "chat.message"}
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, Actor: "svc-chat", Node: genNodes[g.rnd.IntN(len(genNodes))]}
	if len(g.live) > 0 && g.rnd.IntN(4) != 0 {
		s := g.live[g.rnd.IntN(len(g.live))]
		ev.User = s.user
		if g.rnd.IntN(2) == 0 {
			ev.Session, n.Target = s.id, eventpb.NotificationTarget_NOTIFICATION_TARGET_SESSION
		}
	} else {
		ev.User = g.user()
	}
	size := 40 + g.rnd.IntN(80)
	n.Payload = fmt.Appendf(nil, `{"from":"user-%07d","text":"%s"}`, g.rnd.IntN(g.users), g.pad[:size])
	ev.Body = &eventpb.Event_NotificationSent{NotificationSent: n}
	return ev
}

func (g *hubGen) kick() *eventpb.Event {
	k := &eventpb.KickRequested{Target: eventpb.KickTarget_KICK_TARGET_SESSION, Mode: eventpb.KickMode_KICK_MODE_GRACEFUL,
		Reconnect: eventpb.Reconnect_RECONNECT_AFTER, ReconnectAfterMs: 30_000}
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, Actor: "ops-alice", Reason: "abusive messages reported by moderators",
		Body: &eventpb.Event_KickRequested{KickRequested: k}}
	if len(g.live) == 0 {
		ev.User, ev.Session = g.user(), "no-such-session"
		return ev
	}
	s := g.live[g.rnd.IntN(len(g.live))]
	ev.User, ev.Device, ev.Session, ev.Node = s.user, s.device, s.id, s.node
	if g.rnd.IntN(5) == 0 {
		k.Target = eventpb.KickTarget_KICK_TARGET_USER
		g.endUser(s.user, eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED)
	} else {
		g.ending = append(g.ending, genEnd{id: s.id, cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED})
	}
	return ev
}

func (g *hubGen) endUser(user string, cause eventpb.DisconnectCause) {
	for _, dev := range genDevices {
		if id, ok := g.byDev[user+"/"+dev]; ok {
			g.ending = append(g.ending, genEnd{id: id, cause: cause})
		}
	}
}

func (g *hubGen) ban() *eventpb.Event {
	user := g.user()
	if len(g.live) > 0 && g.rnd.IntN(2) == 0 {
		user = g.live[g.rnd.IntN(len(g.live))].user
	}
	var until int64
	if g.rnd.IntN(10) != 0 {
		until = g.now().Add(time.Duration(1+g.rnd.IntN(24)) * time.Hour).UnixNano()
	}
	if _, ok := g.banned[user]; !ok {
		g.bannedL = append(g.bannedL, user)
	}
	g.banned[user] = until
	g.endUser(user, eventpb.DisconnectCause_DISCONNECT_CAUSE_BANNED)
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_BANNED, User: user, Actor: "ops-bob", Reason: "spam: 40 reports in an hour",
		Body: &eventpb.Event_UserBanned{UserBanned: &eventpb.UserBanned{UntilUnixNano: until}}}
}

func (g *hubGen) unban() *eventpb.Event {
	user := g.user()
	if len(g.bannedL) > 0 {
		i := g.rnd.IntN(len(g.bannedL))
		user = g.bannedL[i]
		g.bannedL[i] = g.bannedL[len(g.bannedL)-1]
		g.bannedL = g.bannedL[:len(g.bannedL)-1]
		delete(g.banned, user)
	}
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_UNBANNED, User: user, Actor: "ops-bob", Reason: "appeal accepted",
		Body: &eventpb.Event_UserUnbanned{UserUnbanned: &eventpb.UserUnbanned{}}}
}
