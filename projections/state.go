package projections

import (
	"cmp"
	"container/heap"
	"hash/fnv"
	"slices"
	"sort"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// Session is a live session as the log describes it.
type Session struct {
	ID          string
	User        string
	Device      string
	Node        string
	RemoteAddr  string
	ConnectedAt time.Time
	// ConnectSeq and ConnectID name the session_connected (or
	// session_reconnected) event that started it.
	ConnectSeq uint64
	ConnectID  ulid.ULID
	// Previous is the session this one resumed, for reconnects.
	Previous    string
	HeartbeatMS int64
	// TokenID, TokenIssued and TokenExpires describe the client token the
	// session holds (its jti, iat and exp; a refresh replaces them), zero
	// without one.
	TokenID      string
	TokenIssued  time.Time
	TokenExpires time.Time
	// Transport carries the session: "grpc", "websocket+proto",
	// "websocket+json" ("" when its connect event did not say).
	Transport string
}

// Ended is a session's end as the log describes it.
type Ended struct {
	Session
	EndedAt      time.Time
	EndSeq       uint64
	Cause        eventpb.DisconnectCause
	CauseEventID ulid.ULID
	SupersededBy string
	Reconnect    eventpb.Reconnect
	ReconnectMS  int64
}

// Ban is an active ban. A zero Until means it has no expiry.
type Ban struct {
	User    string
	Reason  string
	Actor   string
	Since   time.Time
	Until   time.Time
	EventID ulid.ULID
	Seq     uint64
}

// ActiveAt reports whether the ban is in force at t: Since <= t < Until.
// A ban expires exactly at Until.
func (b Ban) ActiveAt(t time.Time) bool {
	return !t.Before(b.Since) && (b.Until.IsZero() || t.Before(b.Until))
}

// PendingEnd says that a live session must end, and why: the hub that holds
// the session enforces it and then records a session_disconnected event with
// this cause and event id. The first reason a session gets wins; later ones
// (a ban after a kick) do not replace it.
type PendingEnd struct {
	Session string
	User    string
	Node    string
	// Cause is KICKED, BANNED, SUPERSEDED or REVOKED.
	Cause eventpb.DisconnectCause
	// EventID and Seq name the kick_requested, user_banned, superseding
	// connect or token_revoked event.
	EventID ulid.ULID
	Seq     uint64
	// At is when the end became due: the time of the record that marked
	// the session (for a session that connected during a ban, its connect).
	At     time.Time
	Actor  string
	Reason string
	// Mode is the kick mode (graceful for bans and supersedes).
	Mode eventpb.KickMode
	// Reconnect is the advice the client gets; ReconnectAfter goes with
	// RECONNECT_AFTER. A ban advises RECONNECT_AFTER its expiry, or
	// NOT_ALLOWED without one.
	Reconnect      eventpb.Reconnect
	ReconnectAfter time.Duration
	// SupersededBy is the new session, for SUPERSEDED.
	SupersededBy string
}

// Counters count what the reducer met. Anomalies are counted and skipped;
// they never corrupt the state.
type Counters struct {
	Applied uint64
	// UnknownTypes: events of a type this version does not know.
	UnknownTypes uint64
	// NotEvents: records on other topics (watermill payloads).
	NotEvents uint64
	// UnknownSessions: disconnects of sessions the log never started.
	UnknownSessions uint64
	// DuplicateTerminals: disconnects of sessions that had already ended.
	DuplicateTerminals uint64
	// DuplicateConnects: connects of a session id already live.
	DuplicateConnects uint64
	// UnbanNotBanned: unbans of users without an active ban.
	UnbanNotBanned uint64
	// KicksMissed: kicks that matched no live session.
	KicksMissed uint64
	// BansExpired: bans lifted by their expiry.
	BansExpired uint64
	// BansExpiredOnArrival: bans whose expiry had passed when they were
	// recorded; they change nothing (a ban in force stays in force).
	BansExpiredOnArrival uint64
	// BansNotExtending: bans recorded during a ban in force that would end
	// no later than it (the ban in force is permanent, or ends after or at
	// the same time); the later end stands, so they change nothing.
	BansNotExtending uint64
	// Malformed: known types with a missing field they need (no session,
	// no user); skipped.
	Malformed uint64
	// RevocationsLapsedOnArrival: revocations whose end had passed when
	// they were recorded; RevocationsNotWidening: revocations that cover
	// no more than the one in force (a token's that lapses no later, a
	// user's with an earlier or equal time). They change nothing.
	RevocationsLapsedOnArrival uint64
	RevocationsNotWidening     uint64
	// UnknownRefreshes: token refreshes of sessions that are not live.
	UnknownRefreshes uint64
}

// Change describes what one applied record did to the state: what the hub
// enforces from and what auditq replay shows.
type Change struct {
	Seq  uint64
	Type eventpb.EventType
	// Record is the applied record (the hub delivers notifications from
	// it). It must not be modified.
	Record *ledger.Record
	// Started is the session a connect or reconnect started.
	Started *Session
	// Ended is the session a disconnect ended.
	Ended *Ended
	// Pending lists sessions this record says must end.
	Pending []PendingEnd
	// Banned and Unbanned are set by ban and unban events.
	Banned   *Ban
	Unbanned *Ban
	// Expired lists bans whose expiry passed before this record.
	Expired []Ban
	// Revoked is set by a token_revoked event that took effect.
	Revoked *Revocation
	// Anomaly names what was counted instead of applied, if anything.
	Anomaly string
	// Rebuilt marks the one change Runner.Rebuild hands to OnChange after
	// it swapped in the rebuilt state: Pending lists the ends that state
	// has and the one it replaced lacked. It has no Record; Seq is the
	// rebuilt state's.
	Rebuilt bool
}

// State is the live session table and the ban state after the records
// applied so far. It is a pure reducer: Apply reads no clock, and the same
// records always give the same state. State is not safe for concurrent use;
// the Runner guards it.
type State struct {
	seq  uint64
	time time.Time

	sessions map[string]*Session
	byUser   map[string][]string // live session ids per user, connect order
	onNode   map[string]int      // live sessions per node (LiveOn)
	// holders are the live sessions per client token (jti; none for ""),
	// oldest connect first: a token's revocation and TokenHolders cost
	// its holders, not a pass over every live session.
	holders map[string][]*Session
	pending map[string]*PendingEnd
	bans    map[string]*Ban
	expiry  expiryHeap[*Ban] // bans with an expiry, soonest first

	// Token revocations (by jti, by user) and kicks' refusals of fresh
	// connects (by user+device, by token), each dropped at its Until
	// through lapses (tokens.go), so they stay bounded by what still
	// matters.
	revokedTokens  map[string]*Revocation
	revokedUsers   map[string]*Revocation
	refusedDevices map[deviceKey]*Refusal
	refusedTokens  map[string]*Refusal
	lapses         expiryHeap[lapse]

	// recent remembers the last ended session ids (a bounded ring) only to
	// tell duplicate terminal events from unknown sessions.
	recent    map[string]struct{}
	recentIDs []string
	recentAt  int

	counters Counters
}

// recentEnded bounds the duplicate-terminal memory.
const recentEnded = 4096

// New returns an empty state: nothing applied.
func New() *State {
	return &State{
		sessions: make(map[string]*Session),
		byUser:   make(map[string][]string),
		onNode:   make(map[string]int),
		holders:  make(map[string][]*Session),
		pending:  make(map[string]*PendingEnd),
		bans:     make(map[string]*Ban),
		recent:   make(map[string]struct{}),

		revokedTokens:  make(map[string]*Revocation),
		revokedUsers:   make(map[string]*Revocation),
		refusedDevices: make(map[deviceKey]*Refusal),
		refusedTokens:  make(map[string]*Refusal),
	}
}

// Seq is the last applied sequence number (0: none).
func (s *State) Seq() uint64 { return s.seq }

// Time is the time of the last applied record.
func (s *State) Time() time.Time { return s.time }

// Counters returns the anomaly and progress counters.
func (s *State) Counters() Counters { return s.counters }

// Apply applies the record that follows the last applied one and returns
// what changed. Records must come in sequence order; the caller (Runner,
// Replay) guarantees it. Bans whose expiry is at or before the record's time
// are lifted first.
func (s *State) Apply(r *ledger.Record) Change {
	return s.apply(r, true)
}

// apply is Apply; without full, the Change lacks Started and Ended, the
// copies only a caller of Apply reads (Replay without fn skips them).
func (s *State) apply(r *ledger.Record, full bool) Change {
	ch := Change{Seq: r.Seq, Record: r}
	s.seq = r.Seq
	if r.Time.After(s.time) {
		s.time = r.Time
	}
	ch.Expired = s.expire(r.Time)
	s.lapseDue(r.Time)
	s.counters.Applied++
	ev := r.Event
	if ev == nil {
		s.counters.NotEvents++
		return ch
	}
	ch.Type = ev.GetType()
	switch ev.GetType() {
	case eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED:
		c := ev.GetSessionConnected()
		s.connect(r, ev, &ch, full, "", c.GetRemoteAddr(), c.GetTransport(), c.GetHeartbeatMs(), c.GetSupersedes(), c.GetPolicy(), c.GetToken())
	case eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED:
		c := ev.GetSessionReconnected()
		s.connect(r, ev, &ch, full, c.GetPreviousSession(), c.GetRemoteAddr(), c.GetTransport(), c.GetHeartbeatMs(), c.GetSupersedes(), c.GetPolicy(), c.GetToken())
	case eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED:
		s.disconnect(r, ev, &ch, full)
	case eventpb.EventType_EVENT_TYPE_KICK_REQUESTED:
		s.kick(r, ev, &ch)
	case eventpb.EventType_EVENT_TYPE_USER_BANNED:
		s.ban(r, ev, &ch)
	case eventpb.EventType_EVENT_TYPE_USER_UNBANNED:
		s.unban(ev, &ch)
	case eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED:
		s.revoke(r, ev, &ch)
	case eventpb.EventType_EVENT_TYPE_SESSION_TOKEN_REFRESHED:
		s.refresh(r, ev, &ch)
	case eventpb.EventType_EVENT_TYPE_NODE_DRAINED:
		s.drain(r, ev, &ch)
	case eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED,
		eventpb.EventType_EVENT_TYPE_ADMIN_CALL_REFUSED, eventpb.EventType_EVENT_TYPE_TOKEN_REFRESH_REFUSED:
		// History only: the ledger keeps them; the live state does not change.
	default:
		s.counters.UnknownTypes++
		ch.Anomaly = "unknown event type " + ev.GetType().String()
	}
	return ch
}

// expire lifts bans whose expiry is at or before now (a record's time) and
// returns them. Between records, BanAt and Bans judge expiry against the
// caller's explicit now without changing the state.
func (s *State) expire(now time.Time) []Ban {
	if b, ok := s.expiry.next(); !ok || b.Until.After(now) {
		return nil // the common case, without a call through the generic code
	}
	var out []Ban
	s.expiry.popDue(now, s.banInForce, func(b *Ban) {
		delete(s.bans, b.User)
		s.counters.BansExpired++
		out = append(out, *b)
	})
	return out
}

// banInForce reports whether b is still the user's ban (not lifted or
// replaced): the expiry heap's test of its entries.
func (s *State) banInForce(b *Ban) bool { return s.bans[b.User] == b }

// connect starts a session. The sessions it supersedes are the recorded
// list (connects written before the policy was decided in the log) and,
// when the connect carries a policy, the ones the reducer decides here, in
// log order: what Supersedes gives under the policy, then, for a resume,
// the previous session and any other resume of it still live.
func (s *State) connect(r *ledger.Record, ev *eventpb.Event, ch *Change, full bool, prev, addr, transport string, hb int64, supersedes []string, policy *eventpb.LoginPolicy, tok *eventpb.ClientToken) {
	id := ev.GetSession()
	if id == "" || ev.GetUser() == "" {
		s.counters.Malformed++
		ch.Anomaly = "connect without session or user"
		return
	}
	if _, live := s.sessions[id]; live {
		s.counters.DuplicateConnects++
		ch.Anomaly = "session " + id + " is already live"
		return
	}
	if policy != nil {
		decided := s.Supersedes(Policy{MaxPerUser: int(policy.GetMaxPerUser()), OnePerDevice: policy.GetOnePerDevice()}, ev.GetUser(), ev.GetDevice())
		if prev != "" {
			if _, live := s.sessions[prev]; live && !slices.Contains(decided, prev) {
				decided = append(decided, prev)
			}
			for _, other := range s.byUser[ev.GetUser()] {
				if s.sessions[other].Previous == prev && !slices.Contains(decided, other) {
					decided = append(decided, other)
				}
			}
		}
		supersedes = append(decided, supersedes...)
	}
	sess := &Session{
		ID: id, User: ev.GetUser(), Device: ev.GetDevice(), Node: ev.GetNode(),
		RemoteAddr: addr, ConnectedAt: r.Time, ConnectSeq: r.Seq, ConnectID: r.ID,
		Previous: prev, HeartbeatMS: hb, Transport: transport,
	}
	sess.TokenID, sess.TokenIssued, sess.TokenExpires = clientToken(tok)
	s.sessions[id] = sess
	s.byUser[sess.User] = append(s.byUser[sess.User], id)
	s.onNode[sess.Node]++
	s.hold(sess)
	if full {
		cp := *sess
		ch.Started = &cp
	}
	for _, old := range supersedes {
		o, ok := s.sessions[old]
		if !ok || old == id {
			continue // already gone: nothing to enforce
		}
		s.mark(ch, &PendingEnd{
			Session: old, User: o.User, Node: o.Node,
			Cause:   eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED,
			EventID: r.ID, Seq: r.Seq, At: r.Time, Actor: ev.GetActor(),
			Reason:       "superseded by session " + id,
			Mode:         eventpb.KickMode_KICK_MODE_GRACEFUL,
			Reconnect:    eventpb.Reconnect_RECONNECT_ALLOWED,
			SupersededBy: id,
		})
	}
	// A session that starts during a ban must end like the sessions the ban
	// found live: the hub checks before it connects, but the ban can be
	// recorded in between.
	if b, ok := s.bans[sess.User]; ok && b.ActiveAt(r.Time) {
		s.mark(ch, banEnd(b, sess, r.Time))
	}
	// So must one that starts with a revoked token, or while a kick
	// refuses its user and device or its token.
	if v, ok := s.revokedSession(sess, r.Time); ok {
		s.mark(ch, revokedEnd(v, sess, r.Time))
	}
	if f, ok := s.refusalOf(sess.User, sess.Device, sess.TokenID, r.Time); ok {
		s.mark(ch, refusalEnd(f, sess, r.Time))
	}
}

// drain marks every session live on the drained node to end with cause
// drained, each told to reconnect after a delay spread over the window by
// its id (drainDelay): the same on every node and in every replay.
func (s *State) drain(r *ledger.Record, ev *eventpb.Event, ch *Change) {
	d := ev.GetNodeDrained()
	node := d.GetNode()
	if node == "" {
		s.counters.Malformed++
		ch.Anomaly = "drain without a node"
		return
	}
	var on []*Session
	for _, sess := range s.sessions {
		if sess.Node == node {
			on = append(on, sess)
		}
	}
	slices.SortFunc(on, func(a, b *Session) int { return cmp.Compare(a.ConnectSeq, b.ConnectSeq) })
	window := time.Duration(d.GetWindowMs()) * time.Millisecond
	for _, sess := range on {
		s.mark(ch, &PendingEnd{
			Session: sess.ID, User: sess.User, Node: sess.Node,
			Cause:   eventpb.DisconnectCause_DISCONNECT_CAUSE_DRAINED,
			EventID: r.ID, Seq: r.Seq, At: r.Time, Actor: ev.GetActor(), Reason: ev.GetReason(),
			Mode: eventpb.KickMode_KICK_MODE_GRACEFUL, Reconnect: eventpb.Reconnect_RECONNECT_AFTER,
			ReconnectAfter: DrainDelay(sess.ID, window),
		})
	}
}

// DrainDelay is the reconnect advice a drained session gets: a point in
// [0, window) drawn from its id (FNV-1a), so a node's sessions come back
// spread over the window, and every node and replay gives the same.
func DrainDelay(session string, window time.Duration) time.Duration {
	if window <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(session))
	return time.Duration(h.Sum64() % uint64(window))
}

// mark records p unless the session already has a pending end.
func (s *State) mark(ch *Change, p *PendingEnd) {
	if _, ok := s.pending[p.Session]; ok {
		return
	}
	s.pending[p.Session] = p
	ch.Pending = append(ch.Pending, *p)
}

func (s *State) disconnect(r *ledger.Record, ev *eventpb.Event, ch *Change, full bool) {
	id := ev.GetSession()
	sess, ok := s.sessions[id]
	if !ok {
		if _, seen := s.recent[id]; seen {
			s.counters.DuplicateTerminals++
			ch.Anomaly = "session " + id + " had already ended"
		} else {
			s.counters.UnknownSessions++
			ch.Anomaly = "disconnect of unknown session " + id
		}
		return
	}
	if full {
		d := ev.GetSessionDisconnected()
		end := &Ended{
			Session: *sess, EndedAt: r.Time, EndSeq: r.Seq, Cause: d.GetCause(),
			SupersededBy: d.GetSupersededBy(), Reconnect: d.GetReconnect(), ReconnectMS: d.GetReconnectAfterMs(),
		}
		copy(end.CauseEventID[:], d.GetCauseEventId())
		ch.Ended = end
	}
	s.release(sess)
	if s.onNode[sess.Node]--; s.onNode[sess.Node] == 0 {
		delete(s.onNode, sess.Node)
	}
	delete(s.sessions, id)
	delete(s.pending, id)
	removeFromIndex(s.byUser, sess.User, id)
	s.remember(id)
}

// removeFromIndex removes v from the list index holds under k, and k when
// its list is left empty.
func removeFromIndex[K, V comparable](index map[K][]V, k K, v V) {
	list := index[k]
	if i := slices.Index(list, v); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(index, k)
	} else {
		index[k] = list
	}
}

func (s *State) remember(id string) {
	if len(s.recentIDs) < recentEnded {
		s.recentIDs = append(s.recentIDs, id)
	} else {
		delete(s.recent, s.recentIDs[s.recentAt])
		s.recentIDs[s.recentAt] = id
		s.recentAt = (s.recentAt + 1) % recentEnded
	}
	s.recent[id] = struct{}{}
}

func (s *State) kick(r *ledger.Record, ev *eventpb.Event, ch *Change) {
	k := ev.GetKickRequested()
	var targets []string
	switch k.GetTarget() {
	case eventpb.KickTarget_KICK_TARGET_SESSION:
		if _, ok := s.sessions[ev.GetSession()]; ok {
			targets = []string{ev.GetSession()}
		}
	case eventpb.KickTarget_KICK_TARGET_USER:
		targets = s.byUser[ev.GetUser()]
	case eventpb.KickTarget_KICK_TARGET_USER_DEVICE:
		for _, id := range s.byUser[ev.GetUser()] {
			if s.sessions[id].Device == ev.GetDevice() {
				targets = append(targets, id)
			}
		}
	default:
		s.counters.Malformed++
		ch.Anomaly = "kick without a target"
		return
	}
	if k.GetExceptSession() != "" || k.GetExceptDevice() != "" {
		// "Log out everywhere else": the spared session, or the spared
		// device's sessions, stay. A copy, since targets may be byUser's.
		kept := make([]string, 0, len(targets))
		for _, id := range targets {
			if id != k.GetExceptSession() && (k.GetExceptDevice() == "" || s.sessions[id].Device != k.GetExceptDevice()) {
				kept = append(kept, id)
			}
		}
		targets = kept
	}
	if len(targets) == 0 {
		s.counters.KicksMissed++
		ch.Anomaly = "kick matched no live session"
		return
	}
	mode := k.GetMode()
	if mode == eventpb.KickMode_KICK_MODE_UNSPECIFIED {
		mode = eventpb.KickMode_KICK_MODE_GRACEFUL
	}
	rc := k.GetReconnect()
	if rc == eventpb.Reconnect_RECONNECT_UNSPECIFIED {
		rc = eventpb.Reconnect_RECONNECT_ALLOWED
	}
	var until time.Time
	if ms := k.GetRefuseConnectsMs(); ms > 0 && (rc == eventpb.Reconnect_RECONNECT_NOT_ALLOWED || rc == eventpb.Reconnect_RECONNECT_AFTER) {
		until = r.Time.Add(time.Duration(ms) * time.Millisecond)
	}
	for _, id := range targets {
		sess := s.sessions[id]
		if !until.IsZero() {
			s.refuse(r, ev, sess, rc, until)
		}
		s.mark(ch, &PendingEnd{
			Session: id, User: sess.User, Node: sess.Node,
			Cause:   eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED,
			EventID: r.ID, Seq: r.Seq, At: r.Time, Actor: ev.GetActor(), Reason: ev.GetReason(),
			Mode: mode, Reconnect: rc, ReconnectAfter: time.Duration(k.GetReconnectAfterMs()) * time.Millisecond,
		})
	}
}

func (s *State) ban(r *ledger.Record, ev *eventpb.Event, ch *Change) {
	user := ev.GetUser()
	if user == "" {
		s.counters.Malformed++
		ch.Anomaly = "ban without a user"
		return
	}
	b := &Ban{User: user, Reason: ev.GetReason(), Actor: ev.GetActor(), Since: r.Time, EventID: r.ID, Seq: r.Seq}
	if u := ev.GetUserBanned().GetUntilUnixNano(); u != 0 {
		b.Until = time.Unix(0, u).UTC()
	}
	if !b.Until.IsZero() && !b.Until.After(r.Time) {
		// Already over when it was recorded: nothing to enforce, and a ban
		// in force (expire has lifted the ones that ended) stays.
		s.counters.BansExpiredOnArrival++
		ch.Anomaly = "ban expired before it was recorded"
		return
	}
	old, extends := s.bans[user]
	if extends {
		// A ban during a ban: the later end wins (no expiry is the latest),
		// so a shorter ban never lifts a longer one early. An extension
		// takes the new terms; the user has been banned since the first.
		if !endsLater(b, old) {
			s.counters.BansNotExtending++
			ch.Anomaly = "ban ends no later than the ban in force"
			return
		}
		b.Since = old.Since
	}
	s.bans[user] = b
	if extends {
		s.expiry.dropped(old, s.banInForce) // after the swap: a compaction keeps only bans in force
	}
	s.expiry.push(b)
	cp := *b
	ch.Banned = &cp
	for _, id := range s.byUser[user] {
		s.mark(ch, banEnd(b, s.sessions[id], r.Time))
	}
}

// endsLater reports whether ban b ends after ban old (no expiry is later
// than any).
func endsLater(b, old *Ban) bool {
	switch {
	case old.Until.IsZero():
		return false
	case b.Until.IsZero():
		return true
	default:
		return b.Until.After(old.Until)
	}
}

// banEnd is the pending end of sess under ban b, due at: reconnect after
// the ban's expiry, or not at all without one.
func banEnd(b *Ban, sess *Session, at time.Time) *PendingEnd {
	rc, after := eventpb.Reconnect_RECONNECT_NOT_ALLOWED, time.Duration(0)
	if !b.Until.IsZero() {
		rc, after = eventpb.Reconnect_RECONNECT_AFTER, b.Until.Sub(at)
	}
	return &PendingEnd{
		Session: sess.ID, User: sess.User, Node: sess.Node,
		Cause:   eventpb.DisconnectCause_DISCONNECT_CAUSE_BANNED,
		EventID: b.EventID, Seq: b.Seq, At: at, Actor: b.Actor, Reason: b.Reason,
		Mode: eventpb.KickMode_KICK_MODE_GRACEFUL, Reconnect: rc, ReconnectAfter: after,
	}
}

func (s *State) unban(ev *eventpb.Event, ch *Change) {
	b, ok := s.bans[ev.GetUser()]
	if !ok {
		s.counters.UnbanNotBanned++
		ch.Anomaly = "unban of a user who is not banned"
		return
	}
	delete(s.bans, ev.GetUser())
	s.expiry.dropped(b, s.banInForce)
	cp := *b
	ch.Unbanned = &cp
}

// Session returns the live session id, if it is live.
func (s *State) Session(id string) (Session, bool) {
	sess, ok := s.sessions[id]
	if !ok {
		return Session{}, false
	}
	return *sess, true
}

// Filter selects live sessions; empty fields match everything.
type Filter struct {
	User   string
	Device string
	Node   string
}

// Sessions returns the live sessions matching f, oldest connect first.
func (s *State) Sessions(f Filter) []Session {
	var out []Session
	add := func(sess *Session) {
		if (f.Device == "" || sess.Device == f.Device) && (f.Node == "" || sess.Node == f.Node) {
			out = append(out, *sess)
		}
	}
	if f.User != "" {
		for _, id := range s.byUser[f.User] {
			add(s.sessions[id])
		}
		return out
	}
	for _, sess := range s.sessions {
		add(sess)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ConnectSeq < out[j].ConnectSeq })
	return out
}

// SessionsPage returns, in session id order, at most limit of the live
// sessions matching f whose id sorts after after (all of them for a limit
// of 0), and how many sessions match f in all. It costs one pass over the
// matching sessions and a heap of limit entries, so paging through a large
// table never sorts it whole.
func (s *State) SessionsPage(f Filter, after string, limit int) (page []Session, total int) {
	h := &idHeap{}
	add := func(sess *Session) {
		if (f.Device != "" && sess.Device != f.Device) || (f.Node != "" && sess.Node != f.Node) {
			return
		}
		total++
		if sess.ID <= after && after != "" {
			return
		}
		switch {
		case limit <= 0 || len(*h) < limit:
			heap.Push(h, sess)
		case sess.ID < (*h)[0].ID:
			(*h)[0] = sess
			heap.Fix(h, 0)
		}
	}
	if f.User != "" {
		for _, id := range s.byUser[f.User] {
			add(s.sessions[id])
		}
	} else {
		for _, sess := range s.sessions {
			add(sess)
		}
	}
	page = make([]Session, len(*h))
	for i := len(page) - 1; i >= 0; i-- {
		page[i] = *heap.Pop(h).(*Session)
	}
	return page, total
}

// idHeap is a max-heap of sessions by id: the page's largest id on top, to
// be replaced by a smaller one.
type idHeap []*Session

func (h idHeap) Len() int           { return len(h) }
func (h idHeap) Less(i, j int) bool { return h[i].ID > h[j].ID }
func (h idHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *idHeap) Push(x any)        { *h = append(*h, x.(*Session)) }
func (h *idHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Live is the number of live sessions.
func (s *State) Live() int { return len(s.sessions) }

// LiveOn is how many sessions are live on node, without a pass over them.
func (s *State) LiveOn(node string) int { return s.onNode[node] }

// Pending returns the pending end of session id, if it has one.
func (s *State) Pending(id string) (PendingEnd, bool) {
	p, ok := s.pending[id]
	if !ok {
		return PendingEnd{}, false
	}
	return *p, true
}

// PendingEnds returns every pending end, oldest cause first.
func (s *State) PendingEnds() []PendingEnd {
	var out []PendingEnd
	for _, p := range s.pending {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Seq != out[j].Seq {
			return out[i].Seq < out[j].Seq
		}
		return out[i].Session < out[j].Session
	})
	return out
}

// BanAt returns user's ban if one is in force at now. It does not change
// the state: a ban past its expiry that no record has lifted yet is simply
// not in force.
func (s *State) BanAt(user string, now time.Time) (Ban, bool) {
	b, ok := s.bans[user]
	if !ok || !b.ActiveAt(now) {
		return Ban{}, false
	}
	return *b, true
}

// Bans returns the bans in force at now, by user.
func (s *State) Bans(now time.Time) []Ban {
	var out []Ban
	for _, b := range s.bans {
		if b.ActiveAt(now) {
			out = append(out, *b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out
}

// Policy is the single-device login policy. Zero values switch a limit off.
type Policy struct {
	// MaxPerUser is the most live sessions a user may hold.
	MaxPerUser int
	// OnePerDevice allows one live session per (user, device).
	OnePerDevice bool
}

// Supersedes returns the live sessions a new connect of user on device
// would supersede under p, oldest first. Sessions that already have a
// pending end are not counted: they are on their way out. The hub records
// the answer in the connect event.
func (s *State) Supersedes(p Policy, user, device string) []string {
	var live []string
	for _, id := range s.byUser[user] {
		if _, going := s.pending[id]; !going {
			live = append(live, id)
		}
	}
	var out []string
	if p.OnePerDevice {
		var rest []string
		for _, id := range live {
			if s.sessions[id].Device == device {
				out = append(out, id)
			} else {
				rest = append(rest, id)
			}
		}
		live = rest
	}
	if p.MaxPerUser > 0 && len(live)+1 > p.MaxPerUser {
		out = append(out, live[:len(live)+1-p.MaxPerUser]...)
	}
	// Oldest first across both rules.
	sort.Slice(out, func(i, j int) bool { return s.sessions[out[i]].ConnectSeq < s.sessions[out[j]].ConnectSeq })
	return out
}

// expiresAt schedules a ban with an expiry in the expiry heap.
func (b *Ban) expiresAt() (time.Time, uint64) { return b.Until, b.Seq }
