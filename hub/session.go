package hub

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// session is one live stream held by this node.
type session struct {
	s      *Server
	id     string
	user   string
	device string
	remote string

	notes     noteQueue
	lastHeard atomic.Int64 // unix nanos of the last client frame
	// wake holds a token when serve has something to look at (see serve).
	wake     chan struct{}
	pingDue  atomic.Bool  // set by Server.heartbeats
	nextPing atomic.Int64 // when the next ping is due, as Server.mono; Server.heartbeats' own
	recvEnd  atomic.Pointer[recvEnd]
	// redeliveredBelow: on a resume, notifications with a lower seq were
	// read from the ledger for redelivery; copies fanned out live while
	// the resume was being admitted are dropped.
	redeliveredBelow uint64

	endOnce  sync.Once
	ended    chan struct{} // closed when the session must end
	end      *Disconnect   // why; set before ended closes
	abortNow bool          // abort mode: close the transport, no frame
	endAt    time.Time     // when the cause was recorded

	// closedBy is set when another session's abort closes the connection
	// this one shares with it, so its end says so rather than "client
	// closed".
	closedBy atomic.Pointer[Disconnect]
}

// recvEnd is why a session's receiver stopped: the client's Goodbye
// (io.EOF), a broken stream or a protocol error.
type recvEnd struct{ err error }

// poke wakes the session's serve loop; it never blocks.
func (ss *session) poke() {
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

// stopRecv records why the receiver stopped and wakes the loop.
func (ss *session) stopRecv(err error) {
	ss.recvEnd.Store(&recvEnd{err})
	ss.poke()
}

// endWith asks the session to end; the first reason wins. Called from the
// projection runner (kicks, bans, supersedes) and the session itself.
//
// A session whose handler is stuck in a Send (a client that stopped
// reading, so flow control blocks) would never get to end itself: a
// watchdog closes its transport if it is still registered after twice the
// graceful timeout. The handler's Send then fails and it records the end
// with the cause given here.
func (ss *session) endWith(d *Disconnect, abort bool, at time.Time) {
	ss.endOnce.Do(func() {
		ss.end, ss.abortNow, ss.endAt = d, abort, at
		close(ss.ended)
		ss.poke()
		time.AfterFunc(2*ss.s.cfg.GracefulTimeout, func() {
			ss.s.mu.Lock()
			stuck := ss.s.sessions[ss.id] == ss
			ss.s.mu.Unlock()
			if stuck {
				ss.s.log.Error("session did not end within twice the graceful timeout; closing its connection", "session", ss.id)
				ss.abort()
			}
		})
	})
}

// deliver queues a notification without blocking; a session whose queue is
// full is ended as a slow consumer (the client can resume and get the rest
// redelivered from the ledger).
func (ss *session) deliver(n *hubpb.Notification) {
	if ss.notes.push(n) {
		ss.poke()
	} else {
		ss.endWith(&Disconnect{Code: hubpb.DisconnectCode_DISCONNECT_CODE_SLOW_CONSUMER,
			Reason: "notifications were not read fast enough", Reconnect: hubpb.Reconnect_RECONNECT_ALLOWED}, false, time.Time{})
	}
}

// noteQueue holds the notifications waiting for one session, at most max.
// It is a slice that grows on demand rather than a buffered channel sized
// for the worst case: an idle session costs a few words, not 8 KB.
type noteQueue struct {
	mu  sync.Mutex
	q   []*hubpb.Notification
	max int
}

// push queues n unless the queue is full.
func (q *noteQueue) push(n *hubpb.Notification) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) >= q.max {
		return false
	}
	q.q = append(q.q, n)
	return true
}

// waiting reports whether anything is queued.
func (q *noteQueue) waiting() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.q) > 0
}

// take returns everything queued, oldest first.
func (q *noteQueue) take() []*hubpb.Notification {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.q
	q.q = nil
	return out
}

// abort closes the client's transport connection. Every stream on it
// ends: the other sessions on it are told first, so each records that the
// abort of this session (and its cause) closed it. Call it once ss.end is
// set.
func (ss *session) abort() {
	note := &Disconnect{Reconnect: hubpb.Reconnect_RECONNECT_ALLOWED, Actor: "system",
		Reason: "transport closed by abort of session " + ss.id}
	if d := ss.end; d != nil {
		note.Reason += " (" + causeLabel(causeOfCode(d.Code))
		if d.EventID != "" {
			note.Reason += " " + d.EventID
		}
		note.Reason += ")"
		note.EventID = d.EventID
		if d.Actor != "" {
			note.Actor = d.Actor
		}
	}
	ss.s.mu.Lock()
	l := ss.s.lis
	if ss.remote != "" {
		for _, other := range ss.s.sessions {
			if other != ss && other.remote == ss.remote {
				other.closedBy.CompareAndSwap(nil, note)
			}
		}
	}
	ss.s.mu.Unlock()
	if l != nil {
		l.abort(ss.remote)
	}
}

func (s *Server) resumeSecret(id string) string {
	m := hmac.New(sha256.New, s.cfg.ResumeKey)
	m.Write([]byte(id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Connect serves one client session.
func (s *Server) Connect(stream hubpb.Hub_ConnectServer) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return toStatus(ErrShuttingDown)
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()
	var sess *session
	var err error
	offload(func() { sess, err = s.connect(stream) })
	if err != nil {
		return toStatus(err)
	}
	return toStatus(s.serve(stream.Context(), sess, stream))
}

// offload runs fn on a goroutine of its own and waits for it to return.
//
// A session's gRPC handler goroutine lives as long as the session, and a
// goroutine's stack keeps its largest size while it is in use: one
// stream.Send or ledger append on it would leave every idle session with
// an 8 KB stack (measured: grpc-go's frames below the handler plus ours
// take 3.4 KB, too much for the runtime to shrink it back). Deep work
// runs on short-lived goroutines instead, and the handler only waits; its
// stack stays at the starting 4 KB.
func offload(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

// connect admits the client of stream: Hello, identity, limits, bans, the
// single-device policy, the session's connect event, the Welcome and any
// redelivery. It returns the registered, welcomed session.
func (s *Server) connect(stream hubpb.Hub_ConnectServer) (*session, error) {
	ctx := stream.Context()
	hello, err := s.recvHello(ctx, stream)
	if err != nil {
		return nil, err
	}
	user, device, err := s.identify(hello.GetUser(), hello.GetDevice(), hello.GetToken())
	if err != nil {
		s.metrics.authFailures.Inc()
		return nil, err
	}
	// The same rules for a name from a token's claims as from Hello.
	if err := checkNames("user", user, "device", device); err != nil {
		return nil, err
	}
	remote := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		remote = p.Addr.String()
	}
	// A banned user is told so whatever their connect rate: a cheap read
	// before the limits (the decision is taken again under the lock).
	if rj := s.banRejection(user, s.cfg.Now()); rj != nil {
		return nil, s.reject(user, device, remote, rj)
	}
	if !s.rates.allow(user, s.cfg.Now()) {
		return nil, s.reject(user, device, remote, &Rejection{Code: RejectRateLimited, Reason: "too many connects for this user; slow down",
			Reconnect: hubpb.Reconnect_RECONNECT_AFTER, ReconnectAfter: jittered(rateLimitedAdvice), status: codes.ResourceExhausted})
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
	if rj := s.banRejection(user, now); rj != nil {
		return nil, s.reject(user, device, remote, rj)
	}
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
		s: s, id: ulid.Make().String(), user: user, device: device, remote: remote,
		notes: noteQueue{max: s.cfg.NotifyBuffer}, ended: make(chan struct{}), wake: make(chan struct{}, 1),
	}
	sess.nextPing.Store(s.mono() + int64(s.cfg.HeartbeatInterval))
	sess.lastHeard.Store(now.UnixNano())
	if err := s.register(sess, supersedes); err != nil {
		if errors.Is(err, errNodeFull) {
			return nil, s.reject(user, device, remote, &Rejection{Code: RejectNodeFull, Reason: "this node holds its maximum number of sessions",
				Reconnect: hubpb.Reconnect_RECONNECT_AFTER, ReconnectAfter: jittered(nodeFullAdvice), status: codes.ResourceExhausted})
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
	prev := res.prev
	if prev == "" {
		ev.Type = eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED
		ev.Body = &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{RemoteAddr: remote, HeartbeatMs: hb, Supersedes: supersedes}}
	} else {
		ev.Type = eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED
		ev.Body = &eventpb.Event_SessionReconnected{SessionReconnected: &eventpb.SessionReconnected{
			PreviousSession: prev, LastAckedSeq: res.lastAcked, RemoteAddr: remote, HeartbeatMs: hb, Supersedes: supersedes}}
	}
	stamps, err := s.publishApplied(ctx, ev)
	if err != nil {
		if stamps != nil {
			// Durable but not yet applied (ctx ended): the session exists in
			// the log, so record its end too (recordEnd takes the lock).
			lock.Unlock()
			locked = false
			s.recordEnd(sess, eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED, "client left before the session started", nil)
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
		RedeliveryTruncated: truncated}
	if len(missed) > 0 {
		welcome.OldestRedeliveredSeq = missed[0].GetSeq()
	}
	if err := stream.Send(&hubpb.ServerFrame{Frame: &hubpb.ServerFrame_Welcome{Welcome: welcome}}); err != nil {
		s.recordEnd(sess, eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED, "stream broke before the welcome", nil)
		return nil, err
	}
	for _, n := range missed {
		if err := stream.Send(&hubpb.ServerFrame{Frame: &hubpb.ServerFrame_Notification{Notification: n}}); err != nil {
			s.recordEnd(sess, eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED, "stream broke during redelivery", nil)
			return nil, err
		}
		s.metrics.notifications.Inc()
	}
	registered = false // serve unregisters it
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

// banRejection returns the refusal of a connect by user at now if the user
// is banned then, nil otherwise.
func (s *Server) banRejection(user string, now time.Time) *Rejection {
	var ban projections.Ban
	var banned bool
	s.proj.Read(func(st *projections.State) { ban, banned = st.BanAt(user, now) })
	if !banned {
		return nil
	}
	rj := &Rejection{Code: RejectBanned, Reason: ban.Reason, Until: ban.Until, Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED, status: codes.PermissionDenied}
	if !ban.Until.IsZero() {
		rj.Reconnect, rj.ReconnectAfter = hubpb.Reconnect_RECONNECT_AFTER, ban.Until.Sub(now)
	}
	return rj
}

func (s *Server) recvHello(ctx context.Context, stream hubpb.Hub_ConnectServer) (*hubpb.Hello, error) {
	type result struct {
		f   *hubpb.ClientFrame
		err error
	}
	ch := make(chan result, 1)
	go func() {
		f, err := stream.Recv()
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
		return nil, status.Error(codes.DeadlineExceeded, "no Hello within "+s.cfg.HelloTimeout.String())
	case <-s.shutdown:
		// A stream that never says Hello must not hold a shutdown up for
		// the Hello timeout. Returning ends the stream, which ends the Recv.
		return nil, ErrShuttingDown
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// serve runs a welcomed session until it ends, and records the end.
//
// The loop waits on one channel, sess.wake, which everything that needs
// the session's attention pokes: a queued notification, a ping falling due
// (Server.heartbeats), an end request, the receiver stopping, shutdown. An
// idle session then costs one blocked channel receive instead of a select
// over five channels and a ticker of its own (measured: ~0.7 KB of heap
// per idle session, doubled in RSS by the GC's headroom).
func (s *Server) serve(ctx context.Context, sess *session, stream hubpb.Hub_ConnectServer) error {
	go func() {
		pace := newFrameBucket(s.cfg.ClientFrameRate)
		for {
			f, err := stream.Recv()
			if err != nil {
				sess.stopRecv(err)
				return
			}
			sess.lastHeard.Store(s.cfg.Now().UnixNano())
			if d := pace.take(time.Now()); d > 0 {
				// Over its frame rate: read on only when it is due again;
				// meanwhile flow control stops the client.
				s.metrics.framesPaced.Inc()
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
			}
			switch f.GetFrame().(type) {
			case *hubpb.ClientFrame_Goodbye:
				sess.stopRecv(io.EOF)
				return
			case *hubpb.ClientFrame_Hello:
				sess.stopRecv(invalidf("Hello sent twice"))
				return
			}
		}
	}()
	var nonce int64
	var err error
	var over bool // the session ended: return err
	// The loop only waits; what it does runs offloaded (see offload).
	for {
		select {
		case <-s.shutdown:
			sess.endWith(&Disconnect{Code: hubpb.DisconnectCode_DISCONNECT_CODE_SERVER_SHUTDOWN, Reason: "server shutting down",
				Reconnect: hubpb.Reconnect_RECONNECT_AFTER, ReconnectAfter: s.shutdownAdvice()}, false, time.Time{})
		default:
		}
		select {
		case <-sess.ended:
			offload(func() { err = s.endSession(ctx, sess, stream) })
			return err
		default:
		}
		if r := sess.recvEnd.Load(); r != nil {
			offload(func() { err = s.clientGone(sess, r.err) })
			return err
		}
		if sess.pingDue.Swap(false) {
			idle := s.cfg.Now().Sub(time.Unix(0, sess.lastHeard.Load()))
			if idle >= s.cfg.IdleTimeout {
				sess.endWith(&Disconnect{Code: hubpb.DisconnectCode_DISCONNECT_CODE_IDLE_TIMEOUT,
					Reason: "no frame from the client for " + idle.Truncate(time.Millisecond).String(), Reconnect: hubpb.Reconnect_RECONNECT_ALLOWED}, false, time.Time{})
				continue
			}
			nonce++
			offload(func() {
				if err = stream.Send(&hubpb.ServerFrame{Frame: &hubpb.ServerFrame_Ping{Ping: &hubpb.Ping{Nonce: nonce}}}); err != nil {
					over, err = true, s.clientGone(sess, err)
				}
			})
			if over {
				return err
			}
		}
		if sess.notes.waiting() {
			offload(func() { over, err = s.sendNotes(sess, stream) })
			if over {
				return err
			}
		}
		<-sess.wake
	}
}

// sendNotes sends the notifications queued for sess. If the stream broke,
// it records the end (clientGone) and reports over with the handler's
// error.
func (s *Server) sendNotes(sess *session, stream hubpb.Hub_ConnectServer) (over bool, err error) {
	for _, n := range sess.notes.take() {
		if n.GetSeq() < sess.redeliveredBelow {
			continue // already sent by the redelivery
		}
		if err := stream.Send(&hubpb.ServerFrame{Frame: &hubpb.ServerFrame_Notification{Notification: n}}); err != nil {
			return true, s.clientGone(sess, err)
		}
		s.metrics.notifications.Inc()
	}
	return false, nil
}

// clientGone records the end of a session whose client left (Goodbye, a
// closed stream or a broken transport) or broke the protocol. If the
// server was already ending it, that cause is recorded instead.
func (s *Server) clientGone(sess *session, err error) error {
	select {
	case <-sess.ended:
		d := sess.end
		s.recordEnd(sess, causeOfCode(d.Code), d.Reason, d)
		return d
	default:
	}
	if reason, ok := protocolError(err); ok {
		s.recordEnd(sess, eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED, reason, nil)
		return err
	}
	if d := sess.closedBy.Load(); d != nil {
		s.recordEnd(sess, eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED, d.Reason, d)
		return nil
	}
	reason := "client closed the stream"
	if !errors.Is(err, io.EOF) {
		if st, ok := status.FromError(err); ok && st.Code() == codes.Canceled {
			reason = "client cancelled the stream"
		} else {
			reason = "transport closed: " + err.Error()
		}
	}
	s.recordEnd(sess, eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED, reason, nil)
	return nil
}

// protocolError recognises a client frame the hub cannot take: one it
// rejects itself (ErrInvalid: a second Hello), one over the message size
// (gRPC's ResourceExhausted on receive), or bytes that are not a
// ClientFrame (gRPC's Internal on receive: bad protobuf, a truncated
// message). It returns the reason to record. For the last two gRPC has
// already ended the stream with its own status (the handler's is
// ignored), so the client sees ResourceExhausted or Internal.
func protocolError(err error) (string, bool) {
	if errors.Is(err, ErrInvalid) {
		return "protocol error: " + err.Error(), true
	}
	switch st, _ := status.FromError(err); st.Code() {
	case codes.ResourceExhausted:
		return "protocol error: frame too large: " + st.Message(), true
	case codes.Internal:
		return "protocol error: malformed frame: " + st.Message(), true
	}
	return "", false
}

// endSession ends a session the server decided to end: the Disconnect
// frame first (or, in abort mode, the transport closed at once), then the
// session_disconnected event, then the status carrying the same Disconnect.
func (s *Server) endSession(ctx context.Context, sess *session, stream hubpb.Hub_ConnectServer) error {
	d := sess.end
	if sess.abortNow {
		// The kick is durable already, so recording the end before the
		// connection goes keeps write-ahead, and a client that reconnects
		// the moment its transport drops finds the end and its advice in
		// the log.
		s.recordEnd(sess, causeOfCode(d.Code), d.Reason, d)
		sess.abort()
	} else {
		sent := make(chan struct{})
		go func() {
			_ = stream.Send(&hubpb.ServerFrame{Frame: &hubpb.ServerFrame_Disconnect{Disconnect: d.Frame()}})
			close(sent)
		}()
		select {
		case <-sent:
		case <-time.After(s.cfg.GracefulTimeout):
			sess.abort() // the client does not read: abort the transport
			<-sent
		case <-ctx.Done():
		}
		s.recordEnd(sess, causeOfCode(d.Code), d.Reason, d)
	}
	if !sess.endAt.IsZero() {
		s.metrics.enforceSeconds.Observe(time.Since(sess.endAt).Seconds())
	}
	return d
}

// recordEnd appends the session's session_disconnected event and forgets
// it. A failed append is logged: the session is over either way, and the
// next start records it as lost.
//
// The first recorded cause wins, as in the reducer: if the projections
// mark the session as pending an end (a kick, ban or supersede recorded
// while it was live), the end carries that pending end, whatever ended it
// here (an idle timeout or slow consumer decided before the kick, a
// client that left as it was kicked). The user's connect lock, which Kick,
// Ban and connects hold until their event is applied, makes the look-up
// and the append one step for this node: a kick lands wholly before the
// end (and is carried) or after it (and finds the session gone).
func (s *Server) recordEnd(sess *session, cause eventpb.DisconnectCause, reason string, d *Disconnect) {
	s.unregister(sess)
	lock := s.userLock(sess.user)
	lock.Lock()
	defer lock.Unlock()
	var p projections.PendingEnd
	var pending bool
	s.proj.Read(func(st *projections.State) { p, pending = st.Pending(sess.id) })
	if pending {
		cause, reason, d = p.Cause, p.Reason, pendingDisconnect(p)
	}
	ev := endEvent(sess.user, sess.device, sess.id, cause, reason, d)
	// The session is over either way: its end is recorded even when the
	// stream's context has ended.
	if _, err := s.publish(context.Background(), ev); err != nil {
		s.log.Error("could not record a session end; it will be recorded as lost at the next start", "session", sess.id, "err", err)
	}
	s.metrics.disconnects.WithLabelValues(causeLabel(cause)).Inc()
}

// endEvent is the session_disconnected event of session id of user on
// device, ended with cause and reason. d, when the server ended it, gives
// the reconnect advice, the causing event and who ordered it (default
// "system"); without d the client ended it: reconnect allowed, the user as
// actor.
func endEvent(user, device, id string, cause eventpb.DisconnectCause, reason string, d *Disconnect) *eventpb.Event {
	body := &eventpb.SessionDisconnected{Cause: cause, Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED}
	actor := user
	if d != nil {
		body.Reconnect = ledgerReconnect(d.Reconnect)
		body.ReconnectAfterMs = d.ReconnectAfter.Milliseconds()
		body.SupersededBy = d.SupersededBy
		if id, err := ulid.ParseStrict(d.EventID); err == nil {
			body.CauseEventId = id[:]
		}
		actor = "system"
		if d.Actor != "" {
			actor = d.Actor
		}
	}
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, User: user, Device: device,
		Session: id, Actor: actor, Reason: reason, Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: body}}
}

func causeLabel(c eventpb.DisconnectCause) string {
	name := c.String()
	const p = "DISCONNECT_CAUSE_"
	if len(name) > len(p) {
		name = name[len(p):]
	}
	b := []byte(name)
	for i, ch := range b {
		if ch >= 'A' && ch <= 'Z' {
			b[i] = ch + 'a' - 'A'
		}
	}
	return string(b)
}
