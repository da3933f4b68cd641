package projections_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// gen produces random but plausible event sequences: mostly valid, with the
// anomalies a real log can hold (duplicate terminals, unknown sessions and
// types, unbans of users who are not banned).
type gen struct {
	rnd    *rand.Rand
	st     *projections.State // to pick targets and supersedes like a hub
	policy projections.Policy
	seq    uint64
	now    time.Time
	nextID int
	recs   []*ledger.Record
}

func newGen(seed uint64, policy projections.Policy) *gen {
	return &gen{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), st: projections.New(), policy: policy, now: t0}
}

func (g *gen) user() string   { return fmt.Sprintf("u%d", g.rnd.IntN(6)) }
func (g *gen) device() string { return fmt.Sprintf("d%d", g.rnd.IntN(3)) }

// next appends one random record and returns it.
func (g *gen) next() *ledger.Record {
	g.now = g.now.Add(time.Duration(g.rnd.IntN(6)) * 500 * time.Millisecond) // coarse, so expiries land exactly on record times
	ev := g.event()
	g.seq++
	var id ulid.ULID
	_ = id.SetTime(uint64(g.now.UnixMilli()))
	id[15] = byte(g.seq)
	id[14] = byte(g.seq >> 8)
	id[13] = byte(g.seq >> 16)
	r := &ledger.Record{Seq: g.seq, ID: id, Time: g.now, Topic: ledger.EventsTopic, Event: ev}
	if ev == nil {
		r.Topic, r.Payload = "other", []byte("x")
	}
	g.st.Apply(r)
	g.recs = append(g.recs, r)
	return r
}

func (g *gen) live() []projections.Session { return g.st.Sessions(projections.Filter{}) }

func (g *gen) event() *eventpb.Event {
	live := g.live()
	switch p := g.rnd.IntN(100); {
	case p < 30 || len(live) == 0:
		user, dev := g.user(), g.device()
		g.nextID++
		id := fmt.Sprintf("s%d", g.nextID)
		if g.rnd.IntN(50) == 0 {
			user = "" // malformed: counted, not started
		}
		sup := g.st.Supersedes(g.policy, user, dev)
		if g.rnd.IntN(5) == 0 {
			return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED, User: user, Device: dev, Session: id, Node: "n1", Actor: user,
				Body: &eventpb.Event_SessionReconnected{SessionReconnected: &eventpb.SessionReconnected{PreviousSession: fmt.Sprintf("s%d", g.rnd.IntN(g.nextID)+1), Supersedes: sup}}}
		}
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: user, Device: dev, Session: id, Node: "n1", Actor: user,
			Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{RemoteAddr: "127.0.0.1:1", HeartbeatMs: 1000, Supersedes: sup}}}
	case p < 50:
		// End a live session: with its pending cause if it has one.
		s := live[g.rnd.IntN(len(live))]
		d := &eventpb.SessionDisconnected{Cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED}
		if pe, ok := g.st.Pending(s.ID); ok {
			d.Cause, d.CauseEventId, d.SupersededBy = pe.Cause, pe.EventID[:], pe.SupersededBy
		} else if g.rnd.IntN(4) == 0 {
			d.Cause = eventpb.DisconnectCause(5 + g.rnd.IntN(3)) // idle, shutdown, lost
		}
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, User: s.User, Device: s.Device, Session: s.ID, Node: s.Node, Actor: "system",
			Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: d}}
	case p < 60:
		// Mode and reconnect advice are sometimes left unspecified (the
		// reducer's defaults apply); one kick in twenty has no target.
		k := &eventpb.KickRequested{Target: eventpb.KickTarget(1 + g.rnd.IntN(3)), Mode: eventpb.KickMode(g.rnd.IntN(3)),
			Reconnect: eventpb.Reconnect(g.rnd.IntN(4)), ReconnectAfterMs: int64(g.rnd.IntN(60000))}
		if g.rnd.IntN(20) == 0 {
			k.Target = eventpb.KickTarget_KICK_TARGET_UNSPECIFIED
		}
		s := live[g.rnd.IntN(len(live))]
		// "Log out everywhere else": one user kick in four spares a
		// session (the kicked one's, or an unknown id) or a device.
		if k.Target == eventpb.KickTarget_KICK_TARGET_USER && g.rnd.IntN(4) == 0 {
			switch g.rnd.IntN(3) {
			case 0:
				k.ExceptSession = s.ID
			case 1:
				k.ExceptSession = "s-unknown"
			default:
				k.ExceptDevice = s.Device
			}
		}
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, User: s.User, Device: s.Device, Session: s.ID, Actor: "ops", Reason: "test kick",
			Body: &eventpb.Event_KickRequested{KickRequested: k}}
	case p < 67:
		var until int64
		switch g.rnd.IntN(5) {
		case 0: // no expiry
		case 1: // already over (a ban recorded late)
			until = g.now.Add(-time.Second).UnixNano()
		default: // 0-19 s: 0 ends exactly at the record's time
			until = g.now.Add(time.Duration(g.rnd.IntN(20)) * time.Second).UnixNano()
		}
		user := g.user()
		if g.rnd.IntN(40) == 0 {
			user = "" // malformed
		}
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_BANNED, User: user, Actor: "ops", Reason: fmt.Sprintf("test ban %d", g.seq+1),
			Body: &eventpb.Event_UserBanned{UserBanned: &eventpb.UserBanned{UntilUnixNano: until}}}
	case p < 72:
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_UNBANNED, User: g.user(), Actor: "ops", Reason: "test unban",
			Body: &eventpb.Event_UserUnbanned{UserUnbanned: &eventpb.UserUnbanned{}}}
	case p < 82:
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, User: g.user(), Actor: "ops",
			Body: &eventpb.Event_NotificationSent{NotificationSent: &eventpb.NotificationSent{Target: eventpb.NotificationTarget_NOTIFICATION_TARGET_USER, Topic: "t", Payload: []byte("{}")}}}
	case p < 86:
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED, User: g.user(), Device: g.device(), Actor: "system", Reason: "banned",
			Body: &eventpb.Event_ConnectRejected{ConnectRejected: &eventpb.ConnectRejected{Code: "banned", Count: 1}}}
	case p < 90:
		// A second terminal event, or one for a session that never was.
		id := fmt.Sprintf("s%d", g.rnd.IntN(g.nextID+3)+1)
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, User: g.user(), Session: id, Actor: "system",
			Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: &eventpb.SessionDisconnected{Cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST}}}
	case p < 93:
		return &eventpb.Event{Type: eventpb.EventType(90 + g.rnd.IntN(5)), User: g.user(), Session: "s1"}
	case p < 95:
		return nil // a record on another topic
	default:
		// Connect of a session id already live.
		s := live[g.rnd.IntN(len(live))]
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: s.User, Device: s.Device, Session: s.ID, Node: "n1",
			Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{}}}
	}
}

// model is a naive, index-free restatement of the reducer's rules, checked
// against State in the property tests: sessions, pending ends, bans and
// every counter.
type model struct {
	live    []projections.Session // connect order
	pending map[string]projections.PendingEnd
	bans    map[string]projections.Ban
	ended   map[string]bool // every session that ended (the State keeps the last 4096)
	c       projections.Counters
}

func newModel() *model {
	return &model{pending: map[string]projections.PendingEnd{}, bans: map[string]projections.Ban{}, ended: map[string]bool{}}
}

func (m *model) find(id string) int {
	return slices.IndexFunc(m.live, func(s projections.Session) bool { return s.ID == id })
}

func (m *model) markEnd(p projections.PendingEnd) {
	if _, ok := m.pending[p.Session]; !ok {
		m.pending[p.Session] = p
	}
}

// banEnd is session s's end under ban b, due at t.
func banEnd(b projections.Ban, s projections.Session, t time.Time) projections.PendingEnd {
	p := projections.PendingEnd{Session: s.ID, User: s.User, Node: s.Node, Cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_BANNED,
		EventID: b.EventID, Seq: b.Seq, At: t, Actor: b.Actor, Reason: b.Reason, Mode: eventpb.KickMode_KICK_MODE_GRACEFUL,
		Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED}
	if !b.Until.IsZero() {
		p.Reconnect, p.ReconnectAfter = eventpb.Reconnect_RECONNECT_AFTER, b.Until.Sub(t)
	}
	return p
}

func (m *model) apply(r *ledger.Record) {
	m.c.Applied++
	for u, b := range m.bans {
		if !b.Until.IsZero() && !b.Until.After(r.Time) {
			delete(m.bans, u)
			m.c.BansExpired++
		}
	}
	ev := r.Event
	if ev == nil {
		m.c.NotEvents++
		return
	}
	switch ev.GetType() {
	case eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED:
		if ev.GetSession() == "" || ev.GetUser() == "" {
			m.c.Malformed++
			return
		}
		if m.find(ev.GetSession()) >= 0 {
			m.c.DuplicateConnects++
			return
		}
		s := projections.Session{ID: ev.GetSession(), User: ev.GetUser(), Device: ev.GetDevice(), Node: ev.GetNode(), ConnectedAt: r.Time, ConnectSeq: r.Seq, ConnectID: r.ID}
		sup := ev.GetSessionConnected().GetSupersedes()
		if rc := ev.GetSessionReconnected(); rc != nil {
			s.Previous, s.RemoteAddr, s.HeartbeatMS, sup = rc.GetPreviousSession(), rc.GetRemoteAddr(), rc.GetHeartbeatMs(), rc.GetSupersedes()
		} else {
			s.RemoteAddr, s.HeartbeatMS = ev.GetSessionConnected().GetRemoteAddr(), ev.GetSessionConnected().GetHeartbeatMs()
		}
		m.live = append(m.live, s)
		for _, old := range sup {
			if i := m.find(old); i >= 0 && old != s.ID {
				m.markEnd(projections.PendingEnd{Session: old, User: m.live[i].User, Node: m.live[i].Node, Cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED,
					EventID: r.ID, Seq: r.Seq, At: r.Time, Actor: ev.GetActor(), Reason: "superseded by session " + s.ID,
					Mode: eventpb.KickMode_KICK_MODE_GRACEFUL, Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED, SupersededBy: s.ID})
			}
		}
		// Connected during a ban: it must end too.
		if b, ok := m.bans[s.User]; ok && b.ActiveAt(r.Time) {
			m.markEnd(banEnd(b, s, r.Time))
		}
	case eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED:
		id := ev.GetSession()
		switch i := m.find(id); {
		case i >= 0:
			m.live = slices.Delete(m.live, i, i+1)
			delete(m.pending, id)
			m.ended[id] = true
		case m.ended[id]:
			m.c.DuplicateTerminals++
		default:
			m.c.UnknownSessions++
		}
	case eventpb.EventType_EVENT_TYPE_KICK_REQUESTED:
		k := ev.GetKickRequested()
		if k.GetTarget() == eventpb.KickTarget_KICK_TARGET_UNSPECIFIED {
			m.c.Malformed++
			return
		}
		mode, rc := k.GetMode(), k.GetReconnect()
		if mode == eventpb.KickMode_KICK_MODE_UNSPECIFIED {
			mode = eventpb.KickMode_KICK_MODE_GRACEFUL
		}
		if rc == eventpb.Reconnect_RECONNECT_UNSPECIFIED {
			rc = eventpb.Reconnect_RECONNECT_ALLOWED
		}
		hits := 0
		for _, s := range m.live {
			hit := false
			switch k.GetTarget() {
			case eventpb.KickTarget_KICK_TARGET_SESSION:
				hit = s.ID == ev.GetSession()
			case eventpb.KickTarget_KICK_TARGET_USER:
				hit = s.User == ev.GetUser()
			case eventpb.KickTarget_KICK_TARGET_USER_DEVICE:
				hit = s.User == ev.GetUser() && s.Device == ev.GetDevice()
			}
			if s.ID == k.GetExceptSession() || (k.GetExceptDevice() != "" && s.Device == k.GetExceptDevice()) {
				hit = false
			}
			if hit {
				hits++
				m.markEnd(projections.PendingEnd{Session: s.ID, User: s.User, Node: s.Node, Cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED,
					EventID: r.ID, Seq: r.Seq, At: r.Time, Actor: ev.GetActor(), Reason: ev.GetReason(), Mode: mode, Reconnect: rc,
					ReconnectAfter: time.Duration(k.GetReconnectAfterMs()) * time.Millisecond})
			}
		}
		if hits == 0 {
			m.c.KicksMissed++
		}
	case eventpb.EventType_EVENT_TYPE_USER_BANNED:
		if ev.GetUser() == "" {
			m.c.Malformed++
			return
		}
		b := projections.Ban{User: ev.GetUser(), Reason: ev.GetReason(), Actor: ev.GetActor(), Since: r.Time, EventID: r.ID, Seq: r.Seq}
		if u := ev.GetUserBanned().GetUntilUnixNano(); u != 0 {
			b.Until = time.Unix(0, u).UTC()
		}
		if !b.Until.IsZero() && !b.Until.After(r.Time) {
			m.c.BansExpiredOnArrival++
			return
		}
		if old, ok := m.bans[b.User]; ok {
			// The later end wins; no expiry is the latest.
			if old.Until.IsZero() || (!b.Until.IsZero() && !b.Until.After(old.Until)) {
				m.c.BansNotExtending++
				return
			}
			b.Since = old.Since
		}
		m.bans[b.User] = b
		for _, s := range m.live {
			if s.User == b.User {
				m.markEnd(banEnd(b, s, r.Time))
			}
		}
	case eventpb.EventType_EVENT_TYPE_USER_UNBANNED:
		if _, ok := m.bans[ev.GetUser()]; !ok {
			m.c.UnbanNotBanned++
			return
		}
		delete(m.bans, ev.GetUser())
	case eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED:
	default:
		m.c.UnknownTypes++
	}
}

func (m *model) sessions() []projections.Session { return slices.Clone(m.live) }

func (m *model) pendingEnds() []projections.PendingEnd {
	var out []projections.PendingEnd
	for _, p := range m.pending {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Seq != out[j].Seq {
			return out[i].Seq < out[j].Seq
		}
		return out[i].Session < out[j].Session
	})
	return out
}

// banAt is the model's BanAt.
func (m *model) banAt(user string, now time.Time) (projections.Ban, bool) {
	b, ok := m.bans[user]
	if !ok || !b.ActiveAt(now) {
		return projections.Ban{}, false
	}
	return b, true
}

func (m *model) banList(now time.Time) []projections.Ban {
	var out []projections.Ban
	for _, b := range m.bans {
		if b.ActiveAt(now) {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out
}
