package hub

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/grpc/codes"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// session is one live session held by this node, whatever transport
// carries it.
//
// A session has no goroutine of its own while idle. Whatever needs its
// attention — a queued notification, a ping falling due (Server.heartbeats),
// an end request, the client leaving, shutdown — pokes it, and poke starts
// a short-lived worker (work) unless one is running; the worker does what
// is due and exits. The transport's reader (Serve's loop) is the only
// long-lived goroutine the core needs.
type session struct {
	s      *Server
	t      Transport
	id     string
	user   string
	device string
	remote string

	notes     noteQueue
	replies   noteQueue    // answers to the client's frames (Refreshed), sent before notifications
	lastHeard atomic.Int64 // unix nanos of the last client frame
	pingDue   atomic.Bool  // set by Server.heartbeats
	// tokenExp is when the session's client token expires (unix nanos, 0:
	// none); Server.heartbeats sets expiryDue once it has passed, and the
	// worker ends the session unless a refresh moved it meanwhile.
	tokenExp  atomic.Int64
	expiryDue atomic.Bool
	// refused counts the Refresh frames refused (the reader's): past
	// maxRefusedRefreshes the session ends, so refusals cannot flood the log.
	refused  int
	nextPing atomic.Int64 // when the next ping is due, as Server.mono; Server.heartbeats' own
	nonce    int64        // the worker's
	recvEnd  atomic.Pointer[recvEnd]
	// redeliveredBelow: on a resume, notifications with a lower seq were
	// read from the ledger for redelivery; copies fanned out live while
	// the resume was being admitted are dropped.
	redeliveredBelow uint64

	// working is set while a worker runs; dirty says something was poked
	// since the worker last looked.
	working, dirty atomic.Bool

	// ended is set when the session must end; end, abortNow and endAt
	// are written before it and read only after it is seen set. (A flag,
	// not a channel: nothing blocks on it, and an idle session should not
	// carry a channel it never waits on.)
	endOnce  sync.Once
	ended    atomic.Bool
	end      *Disconnect // why
	abortNow bool        // abort mode: close the transport, no frame
	endAt    time.Time   // when the cause was recorded

	done   chan struct{} // closed once the end is recorded and the transport closed
	result error         // what Serve returns; set before done closes

	// recorded is set when the log holds the session's end already
	// (another node recorded it): ending it records nothing more.
	recorded atomic.Bool

	// closedBy is set when another session's abort closes the connection
	// this one shares with it, so its end says so rather than "client
	// closed".
	closedBy atomic.Pointer[Disconnect]
}

// recvEnd is why a session's reader stopped: the client's Goodbye
// (io.EOF), a broken stream or a protocol error.
type recvEnd struct{ err error }

// poke makes the session look at what is due: it starts a worker unless
// one is running, which then looks again. It never blocks.
func (ss *session) poke() {
	ss.dirty.Store(true)
	if ss.working.CompareAndSwap(false, true) {
		go ss.work()
	}
}

// work runs what is due until nothing is, then exits; a poke that comes
// while it runs makes it look again. Once the session is over it keeps
// working set, so no worker starts again.
func (ss *session) work() {
	for {
		ss.dirty.Store(false)
		if ss.step() {
			return
		}
		ss.working.Store(false)
		// A poke between the step and the store above found working set
		// and started nothing: look again if one came.
		if !ss.dirty.Load() || !ss.working.CompareAndSwap(false, true) {
			return
		}
	}
}

// step does one round of what is due and reports whether the session is
// over (its end recorded and the transport closed).
func (ss *session) step() bool {
	s := ss.s
	select {
	case <-s.shutdown:
		ss.endWith(&Disconnect{Cause: CauseServerShutdown, Reason: "server shutting down",
			Reconnect: eventpb.Reconnect_RECONNECT_AFTER, ReconnectAfter: s.shutdownAdvice()}, false, time.Time{})
	default:
	}
	if ss.ended.Load() {
		ss.finish(s.endSession(ss))
		return true
	}
	if r := ss.recvEnd.Load(); r != nil {
		ss.finish(s.clientGone(ss, r.err))
		return true
	}
	if ss.expiryDue.Load() {
		if exp := ss.tokenExp.Load(); exp != 0 && exp <= s.cfg.Now().UnixNano() {
			ss.endWith(&Disconnect{Cause: CauseTokenExpired, Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED,
				Reason: "the session's token expired at " + time.Unix(0, exp).UTC().Format(time.RFC3339) + "; connect again with a fresh token"}, false, time.Time{})
			return false
		}
		ss.expiryDue.Store(false) // refreshed meanwhile
	}
	if ss.replies.waiting() {
		for _, f := range ss.replies.take() {
			if err := ss.t.Send(f); err != nil {
				ss.finish(s.clientGone(ss, err))
				return true
			}
		}
	}
	if ss.pingDue.Swap(false) {
		idle := s.cfg.Now().Sub(time.Unix(0, ss.lastHeard.Load()))
		if idle >= s.cfg.IdleTimeout {
			ss.endWith(&Disconnect{Cause: CauseIdleTimeout, Reason: "no frame from the client for " + idle.Truncate(time.Millisecond).String(),
				Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED}, false, time.Time{})
			return false
		}
		ss.nonce++
		if err := ss.t.Send(NewFrame(&hubpb.ServerFrame{Frame: &hubpb.ServerFrame_Ping{Ping: &hubpb.Ping{Nonce: ss.nonce}}})); err != nil {
			ss.finish(s.clientGone(ss, err))
			return true
		}
	}
	if ss.notes.waiting() {
		if err := s.sendNotes(ss); err != nil {
			ss.finish(s.clientGone(ss, err))
			return true
		}
	}
	return false
}

// finish closes the transport with the session's end and releases Serve.
func (ss *session) finish(result error) {
	ss.result = result
	ss.t.Close(result)
	close(ss.done)
}

// stopRecv records why the reader stopped and pokes the session.
func (ss *session) stopRecv(err error) {
	ss.recvEnd.CompareAndSwap(nil, &recvEnd{err})
	ss.poke()
}

// endWith asks the session to end; the first reason wins. Called from the
// projection feed (kicks, bans, supersedes), the node's shutdown and the
// session itself (idle, slow consumer).
//
// A session whose worker is stuck in a Send (a client that stopped
// reading, so flow control blocks) would never get to end itself: a
// watchdog aborts its transport if it is still registered after twice the
// graceful timeout. The Send then fails and the end is recorded with the
// cause given here.
func (ss *session) endWith(d *Disconnect, abort bool, at time.Time) {
	ss.endOnce.Do(func() {
		ss.end, ss.abortNow, ss.endAt = d, abort, at
		ss.ended.Store(true)
		ss.poke()
		time.AfterFunc(2*ss.s.cfg.GracefulTimeout, func() {
			if ss.s.holds(ss) {
				ss.s.log.Error("session did not end within twice the graceful timeout; closing its connection", "session", ss.id)
				ss.abort()
			}
		})
	})
}

// endedElsewhere ends a session whose end another node recorded.
func (ss *session) endedElsewhere(d *Disconnect) {
	ss.recorded.Store(true)
	ss.endWith(d, false, time.Time{})
}

// deliver queues a notification without blocking; a session whose queue is
// full is ended as a slow consumer (the client can resume and get the rest
// redelivered from the ledger).
func (ss *session) deliver(f *Frame) {
	if ss.notes.push(f) {
		ss.poke()
	} else {
		ss.endWith(&Disconnect{Cause: CauseSlowConsumer, Reason: "notifications were not read fast enough",
			Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED}, false, time.Time{})
	}
}

// noteQueue holds the notifications waiting for one session, at most max.
// It is a slice that grows on demand rather than a buffered channel sized
// for the worst case: an idle session costs a few words, not 8 KB.
type noteQueue struct {
	mu  sync.Mutex
	q   []*Frame
	max int
}

// push queues f unless the queue is full.
func (q *noteQueue) push(f *Frame) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) >= q.max {
		return false
	}
	q.q = append(q.q, f)
	return true
}

// waiting reports whether anything is queued.
func (q *noteQueue) waiting() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.q) > 0
}

// take returns everything queued, oldest first.
func (q *noteQueue) take() []*Frame {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.q
	q.q = nil
	return out
}

// abort closes the client's transport connection. Every session on it
// ends: the others are told first, so each records that the abort of this
// session (and its cause) closed it. Call it once ss.end is set.
func (ss *session) abort() {
	note := &Disconnect{Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED, Actor: "system",
		Reason: "transport closed by abort of session " + ss.id}
	if d := ss.end; d != nil {
		note.Reason += " (" + d.Cause.String()
		if d.EventID != (ulid.ULID{}) {
			note.Reason += " " + d.EventID.String()
		}
		note.Reason += ")"
		note.EventID = d.EventID
		if d.Actor != "" {
			note.Actor = d.Actor
		}
	}
	if ss.remote != "" {
		ss.s.mu.Lock()
		for _, other := range ss.s.sessions {
			if other != ss && other.remote == ss.remote {
				other.closedBy.CompareAndSwap(nil, note)
			}
		}
		ss.s.mu.Unlock()
	}
	ss.t.Abort()
}

func (s *Server) resumeSecret(id string) string {
	m := hmac.New(sha256.New, s.cfg.ResumeKey)
	m.Write([]byte(id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Serve runs one session over t, from its Hello to its recorded end, and
// returns how it ended: nil when the client left, the *Disconnect when the
// server ended it, or why the connect was refused (a *Rejection, or an
// error wrapping ErrInvalid, ErrUnauthenticated, ErrShuttingDown,
// ErrLedger). Serve reads t on the calling goroutine; it has called
// t.Close with the same value before it returns. Every transport adapter
// calls it: the rules live here, once.
func (s *Server) Serve(t Transport) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		t.Close(ErrShuttingDown)
		return ErrShuttingDown
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()
	var sess *session
	var err error
	offload(func() { sess, err = s.admit(t) })
	if err != nil {
		t.Close(err)
		return err
	}
	pace := newFrameBucket(s.cfg.ClientFrameRate)
	for {
		f, err := t.Recv()
		if err != nil {
			sess.stopRecv(err)
			break
		}
		sess.lastHeard.Store(s.cfg.Now().UnixNano())
		if d := pace.take(time.Now()); d > 0 {
			// Over its frame rate: read on only when it is due again;
			// meanwhile the transport's flow control stops the client.
			s.metrics.framesPaced.Inc()
			timer := time.NewTimer(d)
			select {
			case <-timer.C:
			case <-t.Context().Done():
				timer.Stop()
			case <-sess.done:
				timer.Stop()
			}
		}
		switch x := f.GetFrame().(type) {
		case *hubpb.ClientFrame_Goodbye:
			sess.stopRecv(io.EOF)
		case *hubpb.ClientFrame_Hello:
			sess.stopRecv(invalidf("Hello sent twice"))
		case *hubpb.ClientFrame_Refresh:
			var end error
			offload(func() { end = s.refresh(sess, x.Refresh.GetToken()) })
			if end == nil {
				continue
			}
			sess.stopRecv(end)
		default:
			continue
		}
		break
	}
	<-sess.done
	return sess.result
}

// offload runs fn on a goroutine of its own and waits for it to return.
//
// A transport's reading goroutine lives as long as the session, and a
// goroutine's stack keeps its largest size while it is in use: one ledger
// append or Send on it would leave every idle session with an 8 KB stack
// (measured: grpc-go's frames below the handler plus ours take 3.4 KB,
// too much for the runtime to shrink it back). Deep work runs on
// short-lived goroutines instead; the reader's stack stays at the
// starting 4 KB.
func offload(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

// admit admits the client of t: Hello, identity, limits, bans, the
// single-device policy, the session's connect event, the Welcome and any
// redelivery. It returns the registered, welcomed session.
func (s *Server) admit(t Transport) (*session, error) {
	ctx := t.Context()
	hello, err := s.recvHello(t)
	if err != nil {
		return nil, err
	}
	id, err := s.identify(hello.GetUser(), hello.GetDevice(), hello.GetToken())
	if err != nil {
		s.metrics.authFailures.Inc()
		return nil, err
	}
	user, device := id.user, id.device
	// The same rules for a name from a token's claims as from Hello.
	if err := checkNames("user", user, "device", device); err != nil {
		return nil, err
	}
	remote := t.Remote()
	// A banned user, a revoked token or a connect a kick still refuses is
	// told so whatever the connect rate: a cheap read before the limits
	// (the decision is taken again under the lock). A resume meets kicks
	// only after its own session's end was judged (below).
	checks := refuseBans | refuseKicks
	if hello.GetResume() != nil {
		checks = refuseBans
	}
	if rj := s.refusal(id, s.cfg.Now(), checks); rj != nil {
		return nil, s.reject(user, device, remote, rj)
	}
	if !s.rates.allow(user, s.cfg.Now()) {
		return nil, s.reject(user, device, remote, &Rejection{Code: RejectRateLimited, Reason: "too many connects for this user; slow down",
			Reconnect: eventpb.Reconnect_RECONNECT_AFTER, ReconnectAfter: jittered(rateLimitedAdvice), status: codes.ResourceExhausted})
	}

	// One connect decision per user at a time: the single-device policy
	// must see the previous connect applied, and a kick or ban of the user
	// (recorded under the same lock) comes before or after it, not inside.
	lock := s.userLock(user)
	lock.Lock()
	locked := true
	defer func() {
		if locked {
			lock.Unlock()
		}
	}()
	now := s.cfg.Now()
	if s.draining.Load() {
		return nil, s.reject(user, device, remote, drainingRejection())
	}
	if rj := s.refusal(id, now, checks); rj != nil {
		return nil, s.reject(user, device, remote, rj)
	}
	// What this connect will supersede, as this node sees it now: only
	// to count it against MaxSessions (a user replacing their own session
	// on a full node). The reducer decides what it does supersede, from
	// the policy the event records, in log order (with several nodes,
	// this view can be stale).
	var supersedes []string
	s.proj.Read(func(st *projections.State) { supersedes = st.Supersedes(s.cfg.Policy, user, device) })

	var res resumed
	if r := hello.GetResume(); r != nil {
		if res, err = s.checkResume(ctx, user, device, r, now); err != nil {
			var rj *Rejection
			if errors.As(err, &rj) {
				return nil, s.reject(user, device, remote, rj)
			}
			return nil, err
		}
		// A resume the session's own end allows may still meet a kick
		// that holds its user and device (another session's): the
		// resume's refusal comes first, as it is the more precise. Bans
		// and revocations were read above, under the same lock.
		if rj := s.refusal(id, now, refuseKicks); rj != nil {
			return nil, s.reject(user, device, remote, rj)
		}
		// A resume of a session still live (its old transport not yet
		// noticed as gone) replaces it; so does a second resume of the same
		// session (a client that never got the first one's Welcome): one
		// resume secret never yields two live sessions.
		prev := res.prev
		s.proj.Read(func(st *projections.State) {
			if _, live := st.Session(prev); live && !slices.Contains(supersedes, prev) {
				supersedes = append(supersedes, prev)
			}
			for _, other := range st.Sessions(projections.Filter{User: user}) {
				if other.Previous == prev && !slices.Contains(supersedes, other.ID) {
					supersedes = append(supersedes, other.ID)
				}
			}
		})
	}

	sess := &session{
		s: s, t: t, id: ulid.Make().String(), user: user, device: device, remote: remote,
		notes: noteQueue{max: s.cfg.NotifyBuffer}, replies: noteQueue{max: maxRefusedRefreshes + 2},
		done: make(chan struct{}),
	}
	if !id.token.expires.IsZero() {
		sess.tokenExp.Store(id.token.expires.UnixNano())
	}
	sess.nextPing.Store(s.mono() + int64(s.cfg.HeartbeatInterval))
	sess.lastHeard.Store(now.UnixNano())
	// Until the Welcome is out, only this goroutine may send: a poke
	// (a live notification, a ping) finds working set and waits for the
	// poke after the Welcome.
	sess.working.Store(true)
	if err := s.register(sess, supersedes); err != nil {
		if errors.Is(err, errNodeFull) {
			return nil, s.reject(user, device, remote, &Rejection{Code: RejectNodeFull, Reason: "this node holds its maximum number of sessions",
				Reconnect: eventpb.Reconnect_RECONNECT_AFTER, ReconnectAfter: jittered(nodeFullAdvice), status: codes.ResourceExhausted})
		}
		return nil, err
	}
	registered := true
	defer func() {
		if registered {
			s.unregister(sess)
		}
	}()
	ev := &eventpb.Event{User: user, Device: device, Session: sess.id, Actor: user}
	hb := s.cfg.HeartbeatInterval.Milliseconds()
	var transport string
	if n, ok := t.(namer); ok {
		transport = n.Name()
	}
	prev := res.prev
	if prev == "" {
		ev.Type = eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED
		ev.Body = &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{RemoteAddr: remote, HeartbeatMs: hb, Policy: s.loginPolicy(),
			Token: id.token.pb(), Transport: transport}}
	} else {
		ev.Type = eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED
		ev.Body = &eventpb.Event_SessionReconnected{SessionReconnected: &eventpb.SessionReconnected{
			PreviousSession: prev, LastAckedSeq: res.lastAcked, RemoteAddr: remote, HeartbeatMs: hb, Policy: s.loginPolicy(),
			Token: id.token.pb(), Transport: transport}}
	}
	stamps, err := s.publishApplied(ctx, ev)
	if err != nil {
		if stamps != nil {
			// Durable but not yet applied (ctx ended): the session exists in
			// the log, so record its end too (recordEnd takes the lock).
			lock.Unlock()
			locked = false
			s.recordEnd(sess, CauseClientClosed, "client left before the session started", nil)
		}
		return nil, err
	}
	lock.Unlock()
	locked = false
	s.metrics.connects.Inc()

	// Redelivery of missed notifications comes before live ones: collect
	// them now, while live ones queue in sess.notes.
	var missed []*hubpb.Notification
	var truncated bool
	if prev != "" {
		var ok bool
		if missed, truncated, ok = s.missedNotifications(ctx, user, res, stamps[0].Seq); ok {
			sess.redeliveredBelow = stamps[0].Seq
		}
	}
	welcome := &hubpb.Welcome{SessionId: sess.id, ResumeSecret: s.resumeSecret(sess.id), HeartbeatIntervalMs: hb,
		EventId: stamps[0].ID.String(), Seq: stamps[0].Seq, ResumedFrom: prev, Redelivering: uint32(len(missed)),
		RedeliveryTruncated: truncated, TokenExpiresUnixNano: sess.tokenExp.Load(), LogRewound: res.rewound}
	if len(missed) > 0 {
		welcome.OldestRedeliveredSeq = missed[0].GetSeq()
	}
	if err := t.Send(NewFrame(&hubpb.ServerFrame{Frame: &hubpb.ServerFrame_Welcome{Welcome: welcome}})); err != nil {
		s.recordEnd(sess, CauseClientClosed, "stream broke before the welcome", nil)
		return nil, err
	}
	for _, n := range missed {
		if err := t.Send(NewFrame(&hubpb.ServerFrame{Frame: &hubpb.ServerFrame_Notification{Notification: n}})); err != nil {
			s.recordEnd(sess, CauseClientClosed, "stream broke during redelivery", nil)
			return nil, err
		}
		s.metrics.notifications.Inc()
	}
	registered = false // the session's end unregisters it
	// Hand sending over to the worker, and look at whatever came in the
	// meantime (a kick, a live notification).
	sess.working.Store(false)
	sess.poke()
	return sess, nil
}

// Reconnect advice for refusals over a limit; clients are told a
// jittered delay (see jittered) so they do not come back together.
const (
	rateLimitedAdvice = 10 * time.Second
	nodeFullAdvice    = 5 * time.Second
)

// jittered returns base plus a random delay up to base.
func jittered(base time.Duration) time.Duration {
	return base + rand.N(base+1)
}

// What refusal looks at.
type refusals uint8

const (
	// refuseBans: a ban of the user in force, or the token revoked.
	refuseBans refusals = 1 << iota
	// refuseKicks: a kick that still holds the user and device, or the
	// token.
	refuseKicks
)

// refusal returns the refusal of a connect by id at now, nil if none,
// among those what names: the user is banned, the token is revoked, or a
// kick still holds the user and device or the token (in that order). They
// are read from the projections, in one read, so every node refuses the
// same connects.
func (s *Server) refusal(id identity, now time.Time, what refusals) *Rejection {
	var ban projections.Ban
	var rev projections.Revocation
	var f projections.Refusal
	var banned, revoked, refused bool
	s.proj.Read(func(st *projections.State) {
		if what&refuseBans != 0 {
			if ban, banned = st.BanAt(id.user, now); banned {
				return
			}
			if !id.token.expires.IsZero() {
				if rev, revoked = st.RevokedAt(id.user, id.token.id, id.token.issued, now); revoked {
					return
				}
			}
		}
		if what&refuseKicks != 0 {
			f, refused = st.RefusalAt(id.user, id.device, id.token.id, now)
		}
	})
	switch {
	case banned:
		rj := &Rejection{Code: RejectBanned, Reason: ban.Reason, Until: ban.Until, Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED, status: codes.PermissionDenied}
		if !ban.Until.IsZero() {
			rj.Reconnect, rj.ReconnectAfter = eventpb.Reconnect_RECONNECT_AFTER, ban.Until.Sub(now)
		}
		return rj
	case revoked:
		return &Rejection{Code: RejectRevoked, Reason: "token revoked: " + rev.Reason, EventID: rev.EventID,
			Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED, status: codes.PermissionDenied}
	case refused:
		rj := &Rejection{Code: RejectKicked, Reason: "kicked: " + f.Reason, EventID: f.EventID, Until: f.Until,
			Reconnect: f.Reconnect, status: codes.PermissionDenied}
		if f.Reconnect == eventpb.Reconnect_RECONNECT_AFTER {
			rj.ReconnectAfter = f.Until.Sub(now)
		}
		return rj
	}
	return nil
}

// recvHello waits for the client's first frame, which must be a Hello,
// at most HelloTimeout. On any failure the caller closes t, which ends
// the Recv still waiting here.
func (s *Server) recvHello(t Transport) (*hubpb.Hello, error) {
	type result struct {
		f   *hubpb.ClientFrame
		err error
	}
	ch := make(chan result, 1)
	go func() {
		f, err := t.Recv()
		ch <- result{f, err}
	}()
	timer := time.NewTimer(s.cfg.HelloTimeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			if errors.Is(r.err, io.EOF) {
				return nil, invalidf("stream closed before Hello")
			}
			return nil, r.err
		}
		h := r.f.GetHello()
		if h == nil {
			return nil, invalidf("the first frame must be Hello")
		}
		if err := checkNames("hello: user", h.GetUser(), "hello: device", h.GetDevice(), "hello: resumed session id", h.GetResume().GetSessionId()); err != nil {
			return nil, err
		}
		return h, nil
	case <-timer.C:
		return nil, fmt.Errorf("%w within %s", ErrNoHello, s.cfg.HelloTimeout)
	case <-s.shutdown:
		// A stream that never says Hello must not hold a shutdown up for
		// the Hello timeout.
		return nil, ErrShuttingDown
	case <-t.Context().Done():
		return nil, t.Context().Err()
	}
}

// sendNotes sends the notifications queued for sess.
func (s *Server) sendNotes(sess *session) error {
	for _, f := range sess.notes.take() {
		if f.Message().GetNotification().GetSeq() < sess.redeliveredBelow {
			continue // already sent by the redelivery
		}
		if err := sess.t.Send(f); err != nil {
			return err
		}
		s.metrics.notifications.Inc()
	}
	return nil
}

// clientGone records the end of a session whose client left (Goodbye, a
// closed stream or a broken transport) or broke the protocol. If the
// server was already ending it, that cause is recorded instead.
func (s *Server) clientGone(sess *session, err error) error {
	if sess.ended.Load() {
		d := sess.end
		s.recordEnd(sess, d.Cause, d.Reason, d)
		return d
	}
	var pe *ProtocolError
	if errors.As(err, &pe) || errors.Is(err, ErrInvalid) {
		s.recordEnd(sess, CauseClientClosed, "protocol error: "+err.Error(), nil)
		return err
	}
	if d := sess.closedBy.Load(); d != nil {
		s.recordEnd(sess, CauseClientClosed, d.Reason, d)
		return nil
	}
	reason := "client closed the stream"
	if !errors.Is(err, io.EOF) {
		if errors.Is(err, context.Canceled) {
			reason = "client cancelled the stream"
		} else {
			reason = "transport closed: " + err.Error()
		}
	}
	s.recordEnd(sess, CauseClientClosed, reason, nil)
	return nil
}

// endSession ends a session the server decided to end: the Disconnect
// frame first (or, in abort mode, the transport closed at once), then the
// session_disconnected event. Serve then returns the Disconnect, which the
// transport maps onto its own close.
func (s *Server) endSession(sess *session) error {
	d := sess.end
	if sess.abortNow {
		// The kick is durable already, so recording the end before the
		// connection goes keeps write-ahead, and a client that reconnects
		// the moment its transport drops finds the end and its advice in
		// the log.
		s.recordEnd(sess, d.Cause, d.Reason, d)
		sess.abort()
	} else {
		sent := make(chan struct{})
		go func() {
			_ = sess.t.Send(NewFrame(&hubpb.ServerFrame{Frame: &hubpb.ServerFrame_Disconnect{Disconnect: d.Wire()}}))
			close(sent)
		}()
		timer := time.NewTimer(s.cfg.GracefulTimeout)
		select {
		case <-sent:
		case <-timer.C:
			sess.abort() // the client does not read: abort the transport
			<-sent
		case <-sess.t.Context().Done():
		}
		timer.Stop()
		s.recordEnd(sess, d.Cause, d.Reason, d)
	}
	if !sess.endAt.IsZero() {
		s.metrics.enforceSeconds.Observe(time.Since(sess.endAt).Seconds())
	}
	return d
}

// recordEnd appends the session's session_disconnected event and forgets
// it. A failed append is logged: the session is over either way, and the
// orphan sweep (sweepOrphans) records it as lost once the log takes
// appends again, or the next start does.
//
// The first recorded cause wins, as in the reducer: if the projections
// mark the session as pending an end (a kick, ban or supersede recorded
// while it was live), the end carries that pending end, whatever ended it
// here (an idle timeout or slow consumer decided before the kick, a
// client that left as it was kicked). The user's connect lock, which Kick,
// Ban and connects hold until their event is applied, makes the look-up
// and the append one step for this node: a kick lands wholly before the
// end (and is carried) or after it (and finds the session gone).
func (s *Server) recordEnd(sess *session, cause Cause, reason string, d *Disconnect) {
	// Forgotten, and until its end is published "ending", not unheld: the
	// orphan sweep leaves it to this.
	s.mu.Lock()
	s.forget(sess)
	s.ending[sess.id] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.ending, sess.id)
		s.mu.Unlock()
	}()
	if sess.recorded.Load() {
		return // the log has its end (another node recorded it)
	}
	lock := s.userLock(sess.user)
	lock.Lock()
	defer lock.Unlock()
	var p projections.PendingEnd
	var pending bool
	s.proj.Read(func(st *projections.State) { p, pending = st.Pending(sess.id) })
	if pending {
		d = pendingDisconnect(p)
		cause, reason = d.Cause, d.Reason
	}
	ev := endEvent(sess.user, sess.device, sess.id, cause, reason, d)
	// The session is over either way: its end is recorded even when the
	// transport's context has ended.
	if _, err := s.publish(context.Background(), ev); err != nil {
		s.log.Error("could not record a session end; this node records it as lost once the log takes appends again (or at its next start)", "session", sess.id, "err", err)
	}
	s.metrics.disconnects.WithLabelValues(cause.String()).Inc()
}

// endEvent is the session_disconnected event of session id of user on
// device, ended with cause and reason. d, when the server ended it, gives
// the reconnect advice, the causing event and who ordered it (default
// "system"); without d the client ended it: reconnect allowed, the user as
// actor.
func endEvent(user, device, id string, cause Cause, reason string, d *Disconnect) *eventpb.Event {
	body := &eventpb.SessionDisconnected{Cause: eventpb.DisconnectCause(cause), Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED}
	actor := user
	if d != nil {
		d.record(body)
		actor = "system"
		if d.Actor != "" {
			actor = d.Actor
		}
	}
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, User: user, Device: device,
		Session: id, Actor: actor, Reason: reason, Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: body}}
}
