package projections

import (
	"slices"
	"sort"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// Revocation is a revocation of client tokens in force: the one token
// whose jti is TokenID (User then names who held it, if the hub knew), or
// (TokenID empty) every token of User issued before IssuedBefore. It lapses at Until, when no token it covers can be
// valid any more (the hub records that time in the event: a jti's token
// expiry, or IssuedBefore plus the longest token lifetime it accepts), so
// the state keeps only revocations that still matter. A zero Until never
// lapses (no hub writes one).
type Revocation struct {
	TokenID      string
	User         string
	IssuedBefore time.Time
	Since        time.Time
	Until        time.Time
	Reason       string
	Actor        string
	EventID      ulid.ULID
	Seq          uint64
}

// ActiveAt reports whether the revocation is in force at t: Since <= t <
// Until.
func (v Revocation) ActiveAt(t time.Time) bool {
	return !t.Before(v.Since) && (v.Until.IsZero() || t.Before(v.Until))
}

// Covers reports whether the revocation covers the token tokenID of user,
// issued at issued. A token without iat (zero issued) counts as issued
// before any time.
func (v Revocation) Covers(user, tokenID string, issued time.Time) bool {
	if v.TokenID != "" {
		return tokenID == v.TokenID
	}
	return user == v.User && issued.Before(v.IssuedBefore)
}

// Refusal is a kick's hold on fresh connects: until Until, a connect of
// User on Device (Device-keyed, TokenID empty) or with the client token
// TokenID is refused with the kick's reason, event id and advice, and a
// session that connects anyway (on another node, before it saw the kick)
// is ended as kicked. It comes from kick_requested.refuse_connects_ms, so
// every node and every replay refuses the same connects.
type Refusal struct {
	User    string
	Device  string
	TokenID string
	Since   time.Time
	Until   time.Time
	Reason  string
	Actor   string
	// Reconnect is the kick's advice (NOT_ALLOWED or AFTER).
	Reconnect eventpb.Reconnect
	EventID   ulid.ULID
	Seq       uint64
}

// ActiveAt reports whether the refusal holds at t: Since <= t < Until.
func (f Refusal) ActiveAt(t time.Time) bool {
	return !t.Before(f.Since) && t.Before(f.Until)
}

// deviceKey keys the Device-keyed refusals.
type deviceKey struct{ user, device string }

// lapse is one entry of the lapse heap: a revocation (rev) or a refusal
// (ref), in force until its Until. One whose revocation or refusal was
// replaced is no longer current; lapseDue skips it.
type lapse struct {
	rev *Revocation
	ref *Refusal
}

// expiresAt schedules the revocation's or the refusal's end.
func (l lapse) expiresAt() (time.Time, uint64) {
	if l.rev != nil {
		return l.rev.Until, l.rev.Seq
	}
	return l.ref.Until, l.ref.Seq
}

// current reports whether l's revocation or refusal is still the one in
// the state.
func (s *State) current(l lapse) bool {
	switch {
	case l.rev != nil && l.rev.TokenID != "":
		return s.revokedTokens[l.rev.TokenID] == l.rev
	case l.rev != nil:
		return s.revokedUsers[l.rev.User] == l.rev
	case l.ref.TokenID != "":
		return s.refusedTokens[l.ref.TokenID] == l.ref
	default:
		return s.refusedDevices[deviceKey{l.ref.User, l.ref.Device}] == l.ref
	}
}

// lapseDue drops the revocations and refusals whose Until is at or before
// now (a record's time).
func (s *State) lapseDue(now time.Time) {
	l, ok := s.lapses.next()
	if !ok {
		return
	}
	if until, _ := l.expiresAt(); until.After(now) {
		return // the common case, without a call through the generic code
	}
	s.lapses.popDue(now, s.current, func(l lapse) {
		switch {
		case l.rev != nil && l.rev.TokenID != "":
			delete(s.revokedTokens, l.rev.TokenID)
		case l.rev != nil:
			delete(s.revokedUsers, l.rev.User)
		case l.ref.TokenID != "":
			delete(s.refusedTokens, l.ref.TokenID)
		default:
			delete(s.refusedDevices, deviceKey{l.ref.User, l.ref.Device})
		}
	})
}

// schedule notes that l is in force in place of replaced (a lapse of nil
// pointers: none): the lapse heap forgets replaced and will drop l at its
// Until. The state's maps must hold l already, so that a compaction keeps
// only what is in force.
func (s *State) schedule(l, replaced lapse) {
	if replaced.rev != nil || replaced.ref != nil {
		s.lapses.dropped(replaced, s.current)
	}
	s.lapses.push(l)
}

// laterEnd reports whether an end at a is later than one at b (zero is no
// end, the latest).
func laterEnd(a, b time.Time) bool {
	switch {
	case b.IsZero():
		return false
	case a.IsZero():
		return true
	default:
		return a.After(b)
	}
}

// clientToken reads a connect's or refresh's token.
func clientToken(t *eventpb.ClientToken) (id string, issued, expires time.Time) {
	if t == nil {
		return "", time.Time{}, time.Time{}
	}
	return t.GetId(), fromUnixNano(t.GetIssuedUnixNano()), fromUnixNano(t.GetExpiresUnixNano())
}

// hasToken reports whether sess authenticated with a client token.
func (sess *Session) hasToken() bool { return !sess.TokenExpires.IsZero() || sess.TokenID != "" }

func (s *State) revoke(r *ledger.Record, ev *eventpb.Event, ch *Change) {
	b := ev.GetTokenRevoked()
	v := &Revocation{TokenID: b.GetTokenId(), User: ev.GetUser(), Since: r.Time, Until: fromUnixNano(b.GetUntilUnixNano()),
		Reason: ev.GetReason(), Actor: ev.GetActor(), EventID: r.ID, Seq: r.Seq}
	if v.TokenID == "" {
		v.IssuedBefore = fromUnixNano(b.GetIssuedBeforeUnixNano())
		if v.User == "" || v.IssuedBefore.IsZero() {
			s.counters.Malformed++
			ch.Anomaly = "revocation without a token id, or without a user and a time"
			return
		}
	}
	if !v.Until.IsZero() && !v.Until.After(r.Time) {
		s.counters.RevocationsLapsedOnArrival++
		ch.Anomaly = "revocation lapsed before it was recorded"
		return
	}
	var old *Revocation
	if v.TokenID != "" {
		old = s.revokedTokens[v.TokenID]
	} else {
		old = s.revokedUsers[v.User]
	}
	if old != nil {
		// The wider revocation stands: for a token the one that lapses
		// later, for a user the later time (lapsing no earlier than the
		// one it replaces: every token that covered is covered still).
		if v.TokenID != "" && !laterEnd(v.Until, old.Until) || v.TokenID == "" && !v.IssuedBefore.After(old.IssuedBefore) {
			s.counters.RevocationsNotWidening++
			ch.Anomaly = "revocation covers no more than the one in force"
			return
		}
		if v.TokenID == "" && laterEnd(old.Until, v.Until) {
			v.Until = old.Until
		}
	}
	if v.TokenID != "" {
		s.revokedTokens[v.TokenID] = v
	} else {
		s.revokedUsers[v.User] = v
	}
	s.schedule(lapse{rev: v}, lapse{rev: old})
	cp := *v
	ch.Revoked = &cp
	if v.TokenID != "" {
		// Every holder of the token, oldest connect first.
		for _, sess := range s.holders[v.TokenID] {
			s.mark(ch, revokedEnd(v, sess, r.Time))
		}
		return
	}
	for _, id := range s.byUser[v.User] {
		if sess := s.sessions[id]; sess.hasToken() && v.Covers(sess.User, sess.TokenID, sess.TokenIssued) {
			s.mark(ch, revokedEnd(v, sess, r.Time))
		}
	}
}

// hold adds sess to the holders of its client token, after those that
// connected before it (or at its seq).
func (s *State) hold(sess *Session) {
	if sess.TokenID == "" {
		return
	}
	hs := s.holders[sess.TokenID]
	i := len(hs) // a connect's is the newest: no search
	for i > 0 && hs[i-1].ConnectSeq > sess.ConnectSeq {
		i--
	}
	s.holders[sess.TokenID] = slices.Insert(hs, i, sess)
}

// release removes sess from the holders of its client token: before it
// ends or takes another token.
func (s *State) release(sess *Session) {
	if sess.TokenID == "" {
		return
	}
	removeFromIndex(s.holders, sess.TokenID, sess)
}

// revokedEnd is the pending end of sess under revocation v, due at: not to
// come back with that token.
func revokedEnd(v *Revocation, sess *Session, at time.Time) *PendingEnd {
	return &PendingEnd{
		Session: sess.ID, User: sess.User, Node: sess.Node,
		Cause:   eventpb.DisconnectCause_DISCONNECT_CAUSE_REVOKED,
		EventID: v.EventID, Seq: v.Seq, At: at, Actor: v.Actor, Reason: v.Reason,
		Mode: eventpb.KickMode_KICK_MODE_GRACEFUL, Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED,
	}
}

// refusalEnd is the pending end of sess, which connected while refusal f
// held: it ends as the kick ended the sessions it found.
func refusalEnd(f *Refusal, sess *Session, at time.Time) *PendingEnd {
	p := &PendingEnd{
		Session: sess.ID, User: sess.User, Node: sess.Node,
		Cause:   eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED,
		EventID: f.EventID, Seq: f.Seq, At: at, Actor: f.Actor, Reason: f.Reason,
		Mode: eventpb.KickMode_KICK_MODE_GRACEFUL, Reconnect: f.Reconnect,
	}
	if f.Reconnect == eventpb.Reconnect_RECONNECT_AFTER {
		p.ReconnectAfter = f.Until.Sub(at)
	}
	return p
}

// revokedSession returns the revocation in force at t that covers sess's
// token, if any.
func (s *State) revokedSession(sess *Session, t time.Time) (*Revocation, bool) {
	if !sess.hasToken() {
		return nil, false
	}
	if sess.TokenID != "" {
		if v, ok := s.revokedTokens[sess.TokenID]; ok && v.ActiveAt(t) {
			return v, true
		}
	}
	if v, ok := s.revokedUsers[sess.User]; ok && v.ActiveAt(t) && v.Covers(sess.User, sess.TokenID, sess.TokenIssued) {
		return v, true
	}
	return nil, false
}

// refusalOf returns the refusal in force at t for a connect of user on
// device with token tokenID: the one that ends later if both hold.
func (s *State) refusalOf(user, device, tokenID string, t time.Time) (*Refusal, bool) {
	var best *Refusal
	if f, ok := s.refusedDevices[deviceKey{user, device}]; ok && f.ActiveAt(t) {
		best = f
	}
	if tokenID != "" {
		if f, ok := s.refusedTokens[tokenID]; ok && f.ActiveAt(t) && (best == nil || f.Until.After(best.Until)) {
			best = f
		}
	}
	return best, best != nil
}

// refuse records that a kick with advice rc refuses fresh connects like
// sess's until until.
func (s *State) refuse(r *ledger.Record, ev *eventpb.Event, sess *Session, rc eventpb.Reconnect, until time.Time) {
	base := Refusal{User: sess.User, Since: r.Time, Until: until, Reason: ev.GetReason(), Actor: ev.GetActor(),
		Reconnect: rc, EventID: r.ID, Seq: r.Seq}
	// Each replaces the refusal in force unless that ends no earlier.
	byDevice := base
	byDevice.Device = sess.Device
	k := deviceKey{sess.User, sess.Device}
	if old := s.refusedDevices[k]; old == nil || byDevice.Until.After(old.Until) {
		s.refusedDevices[k] = &byDevice
		s.schedule(lapse{ref: &byDevice}, lapse{ref: old})
	}
	if sess.TokenID != "" {
		byToken := base
		byToken.TokenID = sess.TokenID
		if old := s.refusedTokens[sess.TokenID]; old == nil || byToken.Until.After(old.Until) {
			s.refusedTokens[sess.TokenID] = &byToken
			s.schedule(lapse{ref: &byToken}, lapse{ref: old})
		}
	}
}

func (s *State) refresh(r *ledger.Record, ev *eventpb.Event, ch *Change) {
	sess, ok := s.sessions[ev.GetSession()]
	if !ok {
		s.counters.UnknownRefreshes++
		ch.Anomaly = "token refresh of a session that is not live: " + ev.GetSession()
		return
	}
	s.release(sess)
	sess.TokenID, sess.TokenIssued, sess.TokenExpires = clientToken(ev.GetSessionTokenRefreshed().GetToken())
	s.hold(sess)
	// Refreshed with a token revoked by then (the hub checks first, but
	// the revocation can be recorded in between): it ends.
	if v, ok := s.revokedSession(sess, r.Time); ok {
		s.mark(ch, revokedEnd(v, sess, r.Time))
	}
}

// RevokedAt returns the revocation in force at now that covers the token
// tokenID of user issued at issued, if any. It does not change the state.
func (s *State) RevokedAt(user, tokenID string, issued, now time.Time) (Revocation, bool) {
	sess := Session{User: user, TokenID: tokenID, TokenIssued: issued, TokenExpires: now.Add(time.Nanosecond)}
	v, ok := s.revokedSession(&sess, now)
	if !ok {
		return Revocation{}, false
	}
	return *v, true
}

// TokenHolders returns the live sessions holding the client token tokenID,
// oldest connect first.
func (s *State) TokenHolders(tokenID string) []Session {
	hs := s.holders[tokenID]
	if len(hs) == 0 {
		return nil
	}
	out := make([]Session, len(hs))
	for i, sess := range hs {
		out[i] = *sess
	}
	return out
}

// Revocations returns the revocations in force at now: by token id, then
// by user.
func (s *State) Revocations(now time.Time) []Revocation {
	var out []Revocation
	for _, v := range s.revokedTokens {
		if v.ActiveAt(now) {
			out = append(out, *v)
		}
	}
	for _, v := range s.revokedUsers {
		if v.ActiveAt(now) {
			out = append(out, *v)
		}
	}
	sortRevocations(out)
	return out
}

func sortRevocations(vs []Revocation) {
	sort.Slice(vs, func(i, j int) bool {
		if (vs[i].TokenID == "") != (vs[j].TokenID == "") {
			return vs[i].TokenID != ""
		}
		if vs[i].TokenID != vs[j].TokenID {
			return vs[i].TokenID < vs[j].TokenID
		}
		return vs[i].User < vs[j].User
	})
}

// RefusalAt returns the kick's refusal in force at now of a fresh connect
// of user on device with the token tokenID ("" without one), if any: the
// one that ends later when both the device's and the token's hold.
func (s *State) RefusalAt(user, device, tokenID string, now time.Time) (Refusal, bool) {
	f, ok := s.refusalOf(user, device, tokenID, now)
	if !ok {
		return Refusal{}, false
	}
	return *f, true
}

// Refusals returns the refusals in force at now: by user and device, then
// by token id.
func (s *State) Refusals(now time.Time) []Refusal {
	var out []Refusal
	for _, f := range s.refusedDevices {
		if f.ActiveAt(now) {
			out = append(out, *f)
		}
	}
	for _, f := range s.refusedTokens {
		if f.ActiveAt(now) {
			out = append(out, *f)
		}
	}
	sortRefusals(out)
	return out
}

func sortRefusals(fs []Refusal) {
	sort.Slice(fs, func(i, j int) bool {
		if (fs[i].TokenID == "") != (fs[j].TokenID == "") {
			return fs[i].TokenID == ""
		}
		if fs[i].TokenID != fs[j].TokenID {
			return fs[i].TokenID < fs[j].TokenID
		}
		if fs[i].User != fs[j].User {
			return fs[i].User < fs[j].User
		}
		return fs[i].Device < fs[j].Device
	})
}
