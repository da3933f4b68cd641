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
		k := &eventpb.KickRequested{Target: eventpb.KickTarget(1 + g.rnd.IntN(3)), Mode: eventpb.KickMode(1 + g.rnd.IntN(2)),
			Reconnect: eventpb.Reconnect(1 + g.rnd.IntN(3)), ReconnectAfterMs: int64(g.rnd.IntN(60000))}
		s := live[g.rnd.IntN(len(live))]
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, User: s.User, Device: s.Device, Session: s.ID, Actor: "ops", Reason: "test kick",
			Body: &eventpb.Event_KickRequested{KickRequested: k}}
	case p < 67:
		var until int64
		switch g.rnd.IntN(4) {
		case 0: // no expiry
		case 1: // already over (a ban recorded late)
			until = g.now.Add(-time.Second).UnixNano()
		default:
			until = g.now.Add(time.Duration(g.rnd.IntN(20)) * time.Second).UnixNano()
		}
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_BANNED, User: g.user(), Actor: "ops", Reason: "test ban",
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
// against State in the property tests.
type model struct {
	live    []projections.Session // connect order
	pending map[string]projections.PendingEnd
	bans    map[string]projections.Ban
}

func newModel() *model {
	return &model{pending: map[string]projections.PendingEnd{}, bans: map[string]projections.Ban{}}
}

func (m *model) find(id string) int {
	return slices.IndexFunc(m.live, func(s projections.Session) bool { return s.ID == id })
}

func (m *model) markEnd(p projections.PendingEnd) {
	if _, ok := m.pending[p.Session]; !ok {
		m.pending[p.Session] = p
	}
}

func (m *model) apply(r *ledger.Record) {
	for u, b := range m.bans {
		if !b.Until.IsZero() && !b.Until.After(r.Time) {
			delete(m.bans, u)
		}
	}
	ev := r.Event
	if ev == nil {
		return
	}
	switch ev.GetType() {
	case eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED:
		if m.find(ev.GetSession()) >= 0 {
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
	case eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED:
		if i := m.find(ev.GetSession()); i >= 0 {
			m.live = slices.Delete(m.live, i, i+1)
			delete(m.pending, ev.GetSession())
		}
	case eventpb.EventType_EVENT_TYPE_KICK_REQUESTED:
		k := ev.GetKickRequested()
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
			if hit {
				m.markEnd(projections.PendingEnd{Session: s.ID, User: s.User, Node: s.Node, Cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED,
					EventID: r.ID, Seq: r.Seq, At: r.Time, Actor: ev.GetActor(), Reason: ev.GetReason(), Mode: k.GetMode(), Reconnect: k.GetReconnect(),
					ReconnectAfter: time.Duration(k.GetReconnectAfterMs()) * time.Millisecond})
			}
		}
	case eventpb.EventType_EVENT_TYPE_USER_BANNED:
		b := projections.Ban{User: ev.GetUser(), Reason: ev.GetReason(), Actor: ev.GetActor(), Since: r.Time, EventID: r.ID, Seq: r.Seq}
		if u := ev.GetUserBanned().GetUntilUnixNano(); u != 0 {
			b.Until = time.Unix(0, u).UTC()
		}
		if old, ok := m.bans[b.User]; ok {
			b.Since = old.Since
		}
		if !b.Until.IsZero() && !b.Until.After(r.Time) {
			delete(m.bans, b.User)
			return
		}
		m.bans[b.User] = b
		rc, after := eventpb.Reconnect_RECONNECT_NOT_ALLOWED, time.Duration(0)
		if !b.Until.IsZero() {
			rc, after = eventpb.Reconnect_RECONNECT_AFTER, b.Until.Sub(r.Time)
		}
		for _, s := range m.live {
			if s.User == b.User {
				m.markEnd(projections.PendingEnd{Session: s.ID, User: s.User, Node: s.Node, Cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_BANNED,
					EventID: r.ID, Seq: r.Seq, At: r.Time, Actor: ev.GetActor(), Reason: ev.GetReason(), Mode: eventpb.KickMode_KICK_MODE_GRACEFUL,
					Reconnect: rc, ReconnectAfter: after})
			}
		}
	case eventpb.EventType_EVENT_TYPE_USER_UNBANNED:
		delete(m.bans, ev.GetUser())
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
