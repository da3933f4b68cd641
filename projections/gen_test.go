package projections_test

import (
	"fmt"
	"hash/fnv"
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
	// decide makes half the connects carry the policy (the reducer
	// decides their supersedes) instead of a list, spreads sessions over
	// two nodes and drains one now and then: the log of a cluster.
	decide bool
	seq    uint64
	now    time.Time
	nextID int
	nextTk int
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

// token returns a client token for a connect or a refresh: none a third of
// the time, sometimes one another session has used (a jti revocation then
// reaches several), issued up to 20 s ago, expiring within a minute.
func (g *gen) token() *eventpb.ClientToken {
	if g.rnd.IntN(3) == 0 {
		return nil
	}
	if g.nextTk == 0 || g.rnd.IntN(4) != 0 {
		g.nextTk++
	}
	return &eventpb.ClientToken{Id: fmt.Sprintf("t%d", g.rnd.IntN(g.nextTk)+1),
		IssuedUnixNano:  g.now.Add(-time.Duration(g.rnd.IntN(40)) * 500 * time.Millisecond).UnixNano(),
		ExpiresUnixNano: g.now.Add(time.Duration(1+g.rnd.IntN(60)) * time.Second).UnixNano()}
}

// tokenEvent is a revocation (by token id or by user, sometimes lapsed
// already or malformed), a refresh (sometimes of a session that is not
// live), or a refusal the log only keeps.
func (g *gen) tokenEvent(live []projections.Session) *eventpb.Event {
	switch p := g.rnd.IntN(20); {
	case p < 6:
		id := fmt.Sprintf("t%d", g.rnd.IntN(g.nextTk+2)+1)
		if len(live) > 0 && g.rnd.IntN(2) == 0 && live[0].TokenID != "" {
			id = live[g.rnd.IntN(len(live))].TokenID
			if id == "" {
				id = live[0].TokenID
			}
		}
		until := g.now.Add(time.Duration(g.rnd.IntN(30)-2) * time.Second).UnixNano()
		if g.rnd.IntN(15) == 0 {
			until = 0 // never lapses
		}
		holder := ""
		if g.rnd.IntN(2) == 0 {
			holder = g.user() // recorded under a user, as the hub does when it knows the holder
		}
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED, User: holder, Actor: "ops", Reason: fmt.Sprintf("revoke %s", id),
			Body: &eventpb.Event_TokenRevoked{TokenRevoked: &eventpb.TokenRevoked{TokenId: id, UntilUnixNano: until}}}
	case p < 11:
		before := g.now.Add(-time.Duration(g.rnd.IntN(20)) * 500 * time.Millisecond)
		user := g.user()
		if g.rnd.IntN(15) == 0 {
			user = "" // malformed
		}
		until := before.Add(time.Duration(g.rnd.IntN(40)) * time.Second).UnixNano()
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED, User: user, Actor: "ops", Reason: "log out " + user,
			Body: &eventpb.Event_TokenRevoked{TokenRevoked: &eventpb.TokenRevoked{IssuedBeforeUnixNano: before.UnixNano(), UntilUnixNano: until}}}
	case p < 17:
		id := fmt.Sprintf("s%d", g.rnd.IntN(g.nextID+3)+1)
		user := g.user()
		if len(live) > 0 && g.rnd.IntN(5) != 0 {
			s := live[g.rnd.IntN(len(live))]
			id, user = s.ID, s.User
		}
		tok := g.token()
		if tok == nil {
			tok = &eventpb.ClientToken{Id: "t0", ExpiresUnixNano: g.now.Add(time.Minute).UnixNano()}
		}
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_TOKEN_REFRESHED, User: user, Session: id, Actor: user,
			Body: &eventpb.Event_SessionTokenRefreshed{SessionTokenRefreshed: &eventpb.SessionTokenRefreshed{Token: tok}}}
	case p < 18:
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_TOKEN_REFRESH_REFUSED, User: g.user(), Session: "s1", Actor: "system", Reason: "another user",
			Body: &eventpb.Event_TokenRefreshRefused{TokenRefreshRefused: &eventpb.TokenRefreshRefused{Code: "other_user", TokenUser: "mallory"}}}
	default:
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_ADMIN_CALL_REFUSED, Actor: "auditor-1", Reason: "role auditor",
			Body: &eventpb.Event_AdminCallRefused{AdminCallRefused: &eventpb.AdminCallRefused{Method: "/sessionledger.hub.v1.Admin/Kick", Role: "auditor", Needs: "operator", Count: 1}}}
	}
}

func (g *gen) event() *eventpb.Event {
	live := g.live()
	if g.rnd.IntN(100) < 12 {
		return g.tokenEvent(live)
	}
	switch p := g.rnd.IntN(100); {
	case p < 30 || len(live) == 0:
		user, dev := g.user(), g.device()
		g.nextID++
		id := fmt.Sprintf("s%d", g.nextID)
		if g.rnd.IntN(50) == 0 {
			user = "" // malformed: counted, not started
		}
		sup := g.st.Supersedes(g.policy, user, dev)
		tok := g.token()
		node := "n1"
		var pol *eventpb.LoginPolicy
		if g.decide {
			node = fmt.Sprintf("n%d", 1+g.rnd.IntN(2))
			if g.rnd.IntN(2) == 0 {
				sup, pol = nil, &eventpb.LoginPolicy{MaxPerUser: uint32(g.policy.MaxPerUser), OnePerDevice: g.policy.OnePerDevice}
			}
		}
		if g.rnd.IntN(5) == 0 {
			prev := fmt.Sprintf("s%d", g.rnd.IntN(g.nextID)+1)
			if live := g.live(); g.decide && len(live) > 0 && g.rnd.IntN(2) == 0 {
				// A resume of a live session, or of one another resume
				// took over: the reducer keeps one.
				l := live[g.rnd.IntN(len(live))]
				prev, user = l.ID, l.User
				if l.Previous != "" && g.rnd.IntN(2) == 0 {
					prev = l.Previous
				}
			}
			return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED, User: user, Device: dev, Session: id, Node: node, Actor: user,
				Body: &eventpb.Event_SessionReconnected{SessionReconnected: &eventpb.SessionReconnected{PreviousSession: prev, Supersedes: sup, Policy: pol, Token: tok}}}
		}
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: user, Device: dev, Session: id, Node: node, Actor: user,
			Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{RemoteAddr: "127.0.0.1:1", HeartbeatMs: 1000, Supersedes: sup, Policy: pol, Token: tok}}}
	case g.decide && p < 32:
		node := fmt.Sprintf("n%d", 1+g.rnd.IntN(2))
		if g.rnd.IntN(10) == 0 {
			node = "" // malformed
		}
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_NODE_DRAINED, Actor: "ops", Reason: "upgrade",
			Body: &eventpb.Event_NodeDrained{NodeDrained: &eventpb.NodeDrained{Node: node, WindowMs: int64(g.rnd.IntN(10000))}}}
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
		if g.rnd.IntN(2) == 0 {
			k.RefuseConnectsMs = int64(g.rnd.IntN(20)) * 1000 // 0 refuses nothing
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

	revTokens, revUsers map[string]projections.Revocation
	refDevices          map[[2]string]projections.Refusal
	refTokens           map[string]projections.Refusal
}

func newModel() *model {
	return &model{pending: map[string]projections.PendingEnd{}, bans: map[string]projections.Ban{}, ended: map[string]bool{},
		revTokens: map[string]projections.Revocation{}, revUsers: map[string]projections.Revocation{},
		refDevices: map[[2]string]projections.Refusal{}, refTokens: map[string]projections.Refusal{}}
}

func hasToken(s projections.Session) bool { return s.TokenID != "" || !s.TokenExpires.IsZero() }

// revoked is the revocation in force at t that covers s's token.
func (m *model) revoked(s projections.Session, t time.Time) (projections.Revocation, bool) {
	if !hasToken(s) {
		return projections.Revocation{}, false
	}
	if v, ok := m.revTokens[s.TokenID]; ok && s.TokenID != "" && v.ActiveAt(t) {
		return v, true
	}
	if v, ok := m.revUsers[s.User]; ok && v.ActiveAt(t) && s.TokenIssued.Before(v.IssuedBefore) {
		return v, true
	}
	return projections.Revocation{}, false
}

func revokedEnd(v projections.Revocation, s projections.Session, t time.Time) projections.PendingEnd {
	return projections.PendingEnd{Session: s.ID, User: s.User, Node: s.Node, Cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_REVOKED,
		EventID: v.EventID, Seq: v.Seq, At: t, Actor: v.Actor, Reason: v.Reason, Mode: eventpb.KickMode_KICK_MODE_GRACEFUL,
		Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED}
}

// refusal is the refusal in force at t of a connect like s's: the later
// ending of its device's and its token's.
func (m *model) refusal(s projections.Session, t time.Time) (projections.Refusal, bool) {
	f, ok := m.refDevices[[2]string{s.User, s.Device}]
	ok = ok && f.ActiveAt(t)
	if g, gok := m.refTokens[s.TokenID]; gok && s.TokenID != "" && g.ActiveAt(t) && (!ok || g.Until.After(f.Until)) {
		f, ok = g, true
	}
	return f, ok
}

func (m *model) refuse(f projections.Refusal, old projections.Refusal, had bool) bool {
	return !had || f.Until.After(old.Until)
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
	for k, v := range m.revTokens {
		if !v.Until.IsZero() && !v.Until.After(r.Time) {
			delete(m.revTokens, k)
		}
	}
	for k, v := range m.revUsers {
		if !v.Until.IsZero() && !v.Until.After(r.Time) {
			delete(m.revUsers, k)
		}
	}
	for k, f := range m.refDevices {
		if !f.Until.After(r.Time) {
			delete(m.refDevices, k)
		}
	}
	for k, f := range m.refTokens {
		if !f.Until.After(r.Time) {
			delete(m.refTokens, k)
		}
	}
	ev := r.Event
	if ev == nil {
		m.c.NotEvents++
		return
	}
	switch ev.GetType() {
	case eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED:
		b := ev.GetTokenRevoked()
		v := projections.Revocation{TokenID: b.GetTokenId(), User: ev.GetUser(), Since: r.Time, Reason: ev.GetReason(), Actor: ev.GetActor(), EventID: r.ID, Seq: r.Seq}
		if u := b.GetUntilUnixNano(); u != 0 {
			v.Until = time.Unix(0, u).UTC()
		}
		if v.TokenID == "" {
			if b.GetIssuedBeforeUnixNano() != 0 {
				v.IssuedBefore = time.Unix(0, b.GetIssuedBeforeUnixNano()).UTC()
			}
			if v.User == "" || v.IssuedBefore.IsZero() {
				m.c.Malformed++
				return
			}
		}
		if !v.Until.IsZero() && !v.Until.After(r.Time) {
			m.c.RevocationsLapsedOnArrival++
			return
		}
		if v.TokenID != "" {
			if old, ok := m.revTokens[v.TokenID]; ok && (old.Until.IsZero() || !v.Until.IsZero() && !v.Until.After(old.Until)) {
				m.c.RevocationsNotWidening++
				return
			}
			m.revTokens[v.TokenID] = v
		} else {
			if old, ok := m.revUsers[v.User]; ok {
				if !v.IssuedBefore.After(old.IssuedBefore) {
					m.c.RevocationsNotWidening++
					return
				}
				if !v.Until.IsZero() && (old.Until.IsZero() || old.Until.After(v.Until)) {
					v.Until = old.Until
				}
			}
			m.revUsers[v.User] = v
		}
		for _, s := range m.live {
			if hasToken(s) && (v.TokenID != "" && s.TokenID == v.TokenID || v.TokenID == "" && s.User == v.User && s.TokenIssued.Before(v.IssuedBefore)) {
				m.markEnd(revokedEnd(v, s, r.Time))
			}
		}
	case eventpb.EventType_EVENT_TYPE_SESSION_TOKEN_REFRESHED:
		i := m.find(ev.GetSession())
		if i < 0 {
			m.c.UnknownRefreshes++
			return
		}
		s := &m.live[i]
		s.TokenID, s.TokenIssued, s.TokenExpires = tokenOf(ev.GetSessionTokenRefreshed().GetToken())
		if v, ok := m.revoked(*s, r.Time); ok {
			m.markEnd(revokedEnd(v, *s, r.Time))
		}
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
		sup, pol := ev.GetSessionConnected().GetSupersedes(), ev.GetSessionConnected().GetPolicy()
		if rc := ev.GetSessionReconnected(); rc != nil {
			s.Previous, s.RemoteAddr, s.HeartbeatMS, sup, pol = rc.GetPreviousSession(), rc.GetRemoteAddr(), rc.GetHeartbeatMs(), rc.GetSupersedes(), rc.GetPolicy()
			s.TokenID, s.TokenIssued, s.TokenExpires = tokenOf(rc.GetToken())
		} else {
			s.RemoteAddr, s.HeartbeatMS = ev.GetSessionConnected().GetRemoteAddr(), ev.GetSessionConnected().GetHeartbeatMs()
			s.TokenID, s.TokenIssued, s.TokenExpires = tokenOf(ev.GetSessionConnected().GetToken())
		}
		if pol != nil {
			sup = append(m.decide(s, pol), sup...)
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
		// With a revoked token, or while a kick refuses it: it must end.
		if v, ok := m.revoked(s, r.Time); ok {
			m.markEnd(revokedEnd(v, s, r.Time))
		}
		if f, ok := m.refusal(s, r.Time); ok {
			p := projections.PendingEnd{Session: s.ID, User: s.User, Node: s.Node, Cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED,
				EventID: f.EventID, Seq: f.Seq, At: r.Time, Actor: f.Actor, Reason: f.Reason, Mode: eventpb.KickMode_KICK_MODE_GRACEFUL, Reconnect: f.Reconnect}
			if f.Reconnect == eventpb.Reconnect_RECONNECT_AFTER {
				p.ReconnectAfter = f.Until.Sub(r.Time)
			}
			m.markEnd(p)
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
				if ms := k.GetRefuseConnectsMs(); ms > 0 && (rc == eventpb.Reconnect_RECONNECT_NOT_ALLOWED || rc == eventpb.Reconnect_RECONNECT_AFTER) {
					f := projections.Refusal{User: s.User, Since: r.Time, Until: r.Time.Add(time.Duration(ms) * time.Millisecond),
						Reason: ev.GetReason(), Actor: ev.GetActor(), Reconnect: rc, EventID: r.ID, Seq: r.Seq}
					byDevice := f
					byDevice.Device = s.Device
					if old, had := m.refDevices[[2]string{s.User, s.Device}]; m.refuse(byDevice, old, had) {
						m.refDevices[[2]string{s.User, s.Device}] = byDevice
					}
					if s.TokenID != "" {
						byToken := f
						byToken.TokenID = s.TokenID
						if old, had := m.refTokens[s.TokenID]; m.refuse(byToken, old, had) {
							m.refTokens[s.TokenID] = byToken
						}
					}
				}
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
	case eventpb.EventType_EVENT_TYPE_NODE_DRAINED:
		d := ev.GetNodeDrained()
		if d.GetNode() == "" {
			m.c.Malformed++
			return
		}
		for _, s := range m.live {
			if s.Node == d.GetNode() {
				h := fnv.New64a()
				h.Write([]byte(s.ID))
				var after time.Duration
				if w := uint64(d.GetWindowMs()) * uint64(time.Millisecond); w > 0 {
					after = time.Duration(h.Sum64() % w)
				}
				m.markEnd(projections.PendingEnd{Session: s.ID, User: s.User, Node: s.Node, Cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_DRAINED,
					EventID: r.ID, Seq: r.Seq, At: r.Time, Actor: ev.GetActor(), Reason: ev.GetReason(), Mode: eventpb.KickMode_KICK_MODE_GRACEFUL,
					Reconnect: eventpb.Reconnect_RECONNECT_AFTER, ReconnectAfter: after})
			}
		}
	case eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED,
		eventpb.EventType_EVENT_TYPE_ADMIN_CALL_REFUSED, eventpb.EventType_EVENT_TYPE_TOKEN_REFRESH_REFUSED:
	default:
		m.c.UnknownTypes++
	}
}

// decide is the model's supersede decision for a connect of s carrying a
// policy, before s is live: of the user's live sessions without a pending
// end, the ones on s's device (one per device), then the oldest of the rest
// beyond the limit; then, for a resume, the previous session and every
// other resume of it by the same user that is live.
func (m *model) decide(s projections.Session, pol *eventpb.LoginPolicy) []string {
	var mine, same, rest []projections.Session
	for _, l := range m.live {
		if _, going := m.pending[l.ID]; l.User == s.User && !going {
			mine = append(mine, l)
		}
	}
	for _, l := range mine {
		if pol.GetOnePerDevice() && l.Device == s.Device {
			same = append(same, l)
		} else {
			rest = append(rest, l)
		}
	}
	if max := int(pol.GetMaxPerUser()); max > 0 && len(rest)+1 > max {
		same = append(same, rest[:len(rest)+1-max]...)
	}
	slices.SortFunc(same, func(a, b projections.Session) int { return int(a.ConnectSeq) - int(b.ConnectSeq) })
	var out []string
	for _, l := range same {
		out = append(out, l.ID)
	}
	if s.Previous != "" {
		for _, l := range m.live {
			if (l.ID == s.Previous || l.Previous == s.Previous && l.User == s.User) && !slices.Contains(out, l.ID) {
				out = append(out, l.ID)
			}
		}
	}
	return out
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

func tokenOf(t *eventpb.ClientToken) (string, time.Time, time.Time) {
	if t == nil {
		return "", time.Time{}, time.Time{}
	}
	at := func(n int64) time.Time {
		if n == 0 {
			return time.Time{}
		}
		return time.Unix(0, n).UTC()
	}
	return t.GetId(), at(t.GetIssuedUnixNano()), at(t.GetExpiresUnixNano())
}

// revocationList is the model's Revocations.
func (m *model) revocationList(now time.Time) []projections.Revocation {
	var byToken, byUser []projections.Revocation
	for _, v := range m.revTokens {
		if v.ActiveAt(now) {
			byToken = append(byToken, v)
		}
	}
	for _, v := range m.revUsers {
		if v.ActiveAt(now) {
			byUser = append(byUser, v)
		}
	}
	sort.Slice(byToken, func(i, j int) bool { return byToken[i].TokenID < byToken[j].TokenID })
	sort.Slice(byUser, func(i, j int) bool { return byUser[i].User < byUser[j].User })
	return append(byToken, byUser...)
}

// refusalList is the model's Refusals.
func (m *model) refusalList(now time.Time) []projections.Refusal {
	var byDevice, byToken []projections.Refusal
	for _, f := range m.refDevices {
		if f.ActiveAt(now) {
			byDevice = append(byDevice, f)
		}
	}
	for _, f := range m.refTokens {
		if f.ActiveAt(now) {
			byToken = append(byToken, f)
		}
	}
	sort.Slice(byDevice, func(i, j int) bool {
		if byDevice[i].User != byDevice[j].User {
			return byDevice[i].User < byDevice[j].User
		}
		return byDevice[i].Device < byDevice[j].Device
	})
	sort.Slice(byToken, func(i, j int) bool { return byToken[i].TokenID < byToken[j].TokenID })
	return append(byDevice, byToken...)
}
