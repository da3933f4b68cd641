package hub

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// Server is the hub: the session core every transport serves through
// (Serve), the Admin API, and enforcement of what the projections decide
// (Enforce). It records every intent through its Publisher before it
// takes effect.
type Server struct {
	cfg     Config
	pub     Publisher
	proj    Projection
	hist    History
	cluster Cluster // nil on a single node
	log     *slog.Logger
	metrics *metrics
	health  *health.Server
	lis     *Listener // the gRPC transport's, for aborts

	// The credentials in force; reloads replace them whole.
	keys   atomic.Pointer[ClientKeys] // nil: identities from Hello
	admins atomic.Pointer[adminSet]

	mu       sync.Mutex
	sessions map[string]*session            // live sessions held by this node
	ending   map[string]struct{}            // sessions whose end recordEnd is publishing (not held, not orphans)
	byUser   map[string]map[string]*session // user -> id -> session
	closing  bool
	shutdown chan struct{} // closed when Shutdown starts
	handlers sync.WaitGroup

	userLocks [256]sync.Mutex // serialise connect decisions per user
	seed      maphash.Seed
	rates     *rateLimiter
	rejects   *rejects

	bcast *broadcasts // recent notify-alls, for resumes

	affectedMu sync.Mutex
	affected   map[uint64]int // seq -> sessions an admin event addressed (recent only)
	affectedQ  []uint64

	bg     sync.WaitGroup
	stopBg chan struct{}

	// started is set by Start; draining once a drain of this node was
	// recorded after it (it takes no more sessions until it restarts).
	started, draining atomic.Bool

	backupSem chan struct{} // one Admin.Backup at a time
	grpcSrv   *grpc.Server  // where Register put the services, for WhoAmI

	// epoch carries a monotonic reading: ping schedules are offsets from
	// it, so a wall-clock step cannot stop or bunch pings.
	epoch time.Time
}

// mono is the time since s.epoch on the monotonic clock.
func (s *Server) mono() int64 { return int64(time.Since(s.epoch)) }

// New returns a hub over ports. It does no I/O: start the projection
// (whose OnChange must call Enforce), then Start the hub.
func New(ports Ports, cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("hub config: %w", err)
	}
	if ports.Publisher == nil || ports.Projection == nil || ports.History == nil {
		return nil, errors.New("hub: a Publisher, a Projection and a History are required")
	}
	s := &Server{
		cfg:      cfg,
		pub:      ports.Publisher,
		proj:     ports.Projection,
		hist:     ports.History,
		cluster:  ports.Cluster,
		log:      cfg.Logger,
		health:   health.NewServer(),
		sessions: make(map[string]*session),
		ending:   make(map[string]struct{}),
		byUser:   make(map[string]map[string]*session),
		shutdown: make(chan struct{}),
		seed:     maphash.MakeSeed(),
		affected: make(map[uint64]int),
		stopBg:   make(chan struct{}),
		epoch:    time.Now(),
		bcast:    &broadcasts{limit: cfg.RedeliveryLimit},

		backupSem: make(chan struct{}, 1),
	}
	s.admins.Store(&adminSet{tokens: cfg.adminTokens()})
	switch {
	case cfg.ClientKeys != nil:
		s.keys.Store(cfg.ClientKeys)
	case len(cfg.JWTSecret) > 0:
		k, err := NewClientKeys(cfg.JWTSecret, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("hub config: %w", err)
		}
		s.keys.Store(k)
	}
	s.metrics = newMetrics(cfg.Metrics, s)
	s.rates = newRateLimiter(cfg.UserConnectsPerMinute, cfg.UserConnectBurst)
	s.rejects = newRejects(s)
	s.notServing() // until Start
	return s, nil
}

// Start makes the hub serve, once its projection has caught up with the
// log: it reads the recent notify-alls a resume may need, ends with cause
// lost every session the log shows live on this node (a crash left them
// open), and starts its timers. Call Shutdown to stop.
func (s *Server) Start(ctx context.Context) error {
	if err := s.bcast.load(ctx, s.hist); err != nil {
		return fmt.Errorf("hub: read recent broadcasts: %w", err)
	}
	if err := s.recoverLost(ctx); err != nil {
		return fmt.Errorf("hub: recover sessions lost in a crash: %w", err)
	}
	s.bg.Add(3)
	go s.rejects.loop()
	go s.watchHealth()
	go s.heartbeats()
	if s.cluster != nil {
		s.bg.Add(1)
		go s.watchLost()
	}
	s.started.Store(true)
	s.serving()
	return nil
}

// onlyDraining reports an Err that says only that the node drains.
func onlyDraining(err error) bool {
	j, ok := err.(interface{ Unwrap() []error })
	return ok && len(j.Unwrap()) == 1 && j.Unwrap()[0] == errDraining
}

// loginPolicy is the policy every connect records: the reducer decides
// the supersedes from it, in log order.
func (s *Server) loginPolicy() *eventpb.LoginPolicy {
	return &eventpb.LoginPolicy{MaxPerUser: uint32(s.cfg.Policy.MaxPerUser), OnePerDevice: s.cfg.Policy.OnePerDevice}
}

// healthInterval is how often the hub checks its log and projection for
// the health service.
const healthInterval = time.Second

// Err reports why the hub cannot serve, or nil: its log takes no more
// appends, its projection stopped following the log (nothing recorded would
// be enforced), or it has fallen behind the log (projections.ErrStalled: a
// durable record has waited longer than the runner's StallAfter; nothing
// recorded since is enforced). /healthz reports it; the gRPC health service
// turns NOT_SERVING within healthInterval, and SERVING again once it
// clears (a ledger's failure never does until a restart).
func (s *Server) Err() error {
	var errs []error
	if err := s.pubErr(); err != nil {
		errs = append(errs, fmt.Errorf("ledger: %w", err))
	}
	if err := s.proj.Err(); err != nil {
		errs = append(errs, fmt.Errorf("projections: %w", err))
	}
	if s.draining.Load() {
		errs = append(errs, errDraining)
	}
	if p, ok := s.proj.(interface{ Stalled() error }); ok {
		if err := p.Stalled(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pubErr is the Publisher's own report that it takes no appends now (its
// optional Err), or nil.
func (s *Server) pubErr() error {
	if p, ok := s.pub.(interface{ Err() error }); ok {
		return p.Err()
	}
	return nil
}

// heartbeats marks a ping due on every session whose heartbeat interval
// has passed since its last one, and an end due on every session whose
// client token has expired (by Config.Now), and pokes it: one ticker for
// the node instead of one per session. Pings are scheduled on the monotonic clock
// (a wall-clock step cannot stop them, and a test's Config.Now does not
// hold them back) and are up to a tick late; the session judges idleness
// by Config.Now when a ping falls due, so an idle end comes at most one
// interval and one tick after IdleTimeout.
func (s *Server) heartbeats() {
	defer s.bg.Done()
	t := time.NewTicker(heartbeatTick(s.cfg.HeartbeatInterval))
	defer t.Stop()
	var due []*session
	// The orphan sweep runs on a goroutine of its own (it may publish),
	// one at a time, and stops with this loop.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := map[string]time.Time{}
	var sweeping atomic.Bool
	lastSweep := s.mono()
	for {
		select {
		case <-t.C:
		case <-s.stopBg:
			return
		}
		now := s.mono()
		if now-lastSweep >= int64(s.cfg.OrphanAfter/2) && sweeping.CompareAndSwap(false, true) {
			lastSweep = now
			s.bg.Add(1)
			go func() {
				defer s.bg.Done()
				defer sweeping.Store(false)
				s.sweepOrphans(ctx, seen, s.cfg.Now())
			}()
		}
		wall := s.cfg.Now().UnixNano()
		next := now + int64(s.cfg.HeartbeatInterval)
		s.mu.Lock()
		for _, sess := range s.sessions {
			ping := sess.nextPing.Load() <= now
			if ping {
				sess.nextPing.Store(next)
				sess.pingDue.Store(true)
			}
			// A token that expired ends its session; the same tick finds
			// it, so the end is at most a tick late, and no session needs
			// a timer of its own.
			if sess.expired(wall) {
				sess.expiryDue.Store(true)
			} else if !ping {
				continue
			}
			due = append(due, sess)
		}
		s.mu.Unlock()
		for i, sess := range due {
			sess.poke()
			due[i] = nil
		}
		due = due[:0]
	}
}

// heartbeatTick is how often heartbeats looks for pings due: a tenth of
// the interval, so a ping is at most that late, and at least 1 ms.
func heartbeatTick(interval time.Duration) time.Duration {
	return max(interval/10, time.Millisecond)
}

// watchHealth turns the health service NOT_SERVING, and logs why, while
// Err reports a failure, and SERVING again once it does not: a ledger's
// failure is sticky until a restart; projections that fell behind catch
// up; a cluster's log comes back when its quorum or connection does.
func (s *Server) watchHealth() {
	defer s.bg.Done()
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	var failing error
	for {
		select {
		case <-t.C:
		case <-s.stopBg:
			return
		}
		err := s.Err()
		switch {
		case err != nil && failing == nil:
			s.notServing()
			if onlyDraining(err) {
				s.log.Info("health reports NOT_SERVING while the node drains")
			} else if errors.Is(err, projections.ErrStalled) {
				s.log.Error("the projections are behind the log: nothing recorded since is enforced; health reports NOT_SERVING until they catch up", "err", err)
			} else {
				s.log.Error("the hub cannot serve; health reports NOT_SERVING", "err", err)
			}
		case err == nil && failing != nil:
			s.serving()
			s.log.Info("the hub can serve again; health reports SERVING")
		}
		failing = err
	}
}

func (s *Server) serving() {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus("sessionledger.hub.v1.Hub", healthpb.HealthCheckResponse_SERVING)
}

func (s *Server) notServing() {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus("sessionledger.hub.v1.Hub", healthpb.HealthCheckResponse_NOT_SERVING)
}

// Health returns the gRPC health service to register.
func (s *Server) Health() *health.Server { return s.health }

// publish records events durably through the Publisher and returns their
// stamps (seq, id, time). Each event is encoded once, here: the message
// payload is what the log stores. ctx bounds only the wait for the log to
// take them: once taken, they are committed or failed as a whole, and
// publish waits for which. An event the log refuses is ErrInvalid; any
// other failure is logged and returned as ErrLedger: the caller must not
// act.
func (s *Server) publish(ctx context.Context, events ...*eventpb.Event) ([]ledger.Stamp, error) {
	return s.publishKeyed(ctx, nil, events...)
}

// publishKeyed is publish with each event's idempotency key (the
// message's UUID) given, not drawn: a cluster's log stores a message once
// per key within its duplicate window (several nodes recording the same
// fact), and the publish of a copy returns the stored one's stamp.
func (s *Server) publishKeyed(ctx context.Context, keys []string, events ...*eventpb.Event) ([]ledger.Stamp, error) {
	msgs, err := eventMessages(ctx, s.cfg.Node, events)
	if err != nil {
		return nil, err
	}
	for i, k := range keys {
		msgs[i].UUID = k
	}
	start := time.Now()
	stamps, err := s.pub.PublishStamped(ledger.EventsTopic, msgs...)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// The caller gave up before the writer took the events:
			// nothing was written and the log is fine.
			return nil, fmt.Errorf("publish: %w", ctx.Err())
		}
		if errors.Is(err, ledger.ErrInvalidEvent) {
			// Nothing was written and the log is fine: the request was
			// bad (the Admin and Hello limits are meant to catch it
			// first).
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		s.metrics.appendFailures.Inc()
		if s.Err() != nil {
			// The log takes no more appends until it is reopened: tell
			// load balancers and operators through health now, not at
			// the next health check.
			s.notServing()
		}
		if errors.Is(err, ledger.ErrOutcomeUnknown) {
			ids := make([]string, len(msgs))
			for i, m := range msgs {
				ids[i] = m.UUID
			}
			s.log.Error("ledger append not answered; the action's outcome is unknown", "messages", strings.Join(ids, ","), "err", err)
			return nil, fmt.Errorf("%w: %w", ErrLedger, &OutcomeUnknown{Messages: ids, Err: err})
		}
		s.log.Error("ledger append failed; refusing the action", "err", err)
		return nil, fmt.Errorf("%w: %w", ErrLedger, err)
	}
	if len(stamps) != len(msgs) {
		return nil, fmt.Errorf("%w: publish returned %d stamps for %d events", ErrLedger, len(stamps), len(msgs))
	}
	s.metrics.appendSeconds.Observe(time.Since(start).Seconds())
	return stamps, nil
}

// publishApplied publishes and waits until the projection applied the
// last event (and the hub's enforcement for it began).
func (s *Server) publishApplied(ctx context.Context, events ...*eventpb.Event) ([]ledger.Stamp, error) {
	return s.publishAppliedKeyed(ctx, nil, events...)
}

// publishAppliedKeyed is publishApplied with the events' keys given
// (publishKeyed).
func (s *Server) publishAppliedKeyed(ctx context.Context, keys []string, events ...*eventpb.Event) ([]ledger.Stamp, error) {
	st, err := s.publishKeyed(ctx, keys, events...)
	if err != nil {
		return nil, err
	}
	if err := s.proj.WaitApplied(ctx, st[len(st)-1].Seq); err != nil {
		return st, fmt.Errorf("%w: projections: %v", ErrLedger, err)
	}
	return st, nil
}

// Enforce is the projection's change feed (projections.Config.OnChange):
// it ends the sessions this node holds that the applied record marks, and
// fans notifications out. It never blocks.
func (s *Server) Enforce(ch projections.Change) {
	if len(ch.Pending) > 0 {
		if !ch.Rebuilt {
			// A rebuild's change is not a record's: its seq is only
			// the rebuilt state's, and may be an admin call's.
			s.noteAffected(ch.Seq, len(ch.Pending))
		}
		for _, p := range ch.Pending {
			s.mu.Lock()
			sess := s.sessions[p.Session]
			s.mu.Unlock()
			if sess != nil {
				sess.endWith(pendingDisconnect(p), p.Mode == eventpb.KickMode_KICK_MODE_ABORT, p.At)
			}
		}
	}
	if ch.Type == eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT && ch.Record != nil {
		s.fanOut(ch.Record)
	}
	if ch.Type == eventpb.EventType_EVENT_TYPE_NODE_DRAINED && ch.Record != nil {
		s.drained(ch.Record.Event.GetNodeDrained().GetNode())
	}
	if e := ch.Ended; e != nil {
		s.mu.Lock()
		sess := s.sessions[e.ID]
		s.mu.Unlock()
		if sess != nil {
			// Another node recorded the end of a session this one still
			// holds: this node was cut off and the others recorded it
			// lost. The log says it is over: close it, recording nothing.
			sess.endedElsewhere(ended(e, ch.Record))
		}
	}
}

// ended is the Disconnect a client is told when the log ended its session
// without this node: the recorded cause and advice, and the event behind
// it (the kick, ban or superseding connect), or else the recorded end
// itself.
func ended(e *projections.Ended, r *ledger.Record) *Disconnect {
	d := &Disconnect{Cause: Cause(e.Cause), Reason: "the cluster recorded this session's end while this node was cut off from it",
		Reconnect: e.Reconnect, ReconnectAfter: time.Duration(e.ReconnectMS) * time.Millisecond, EventID: e.CauseEventID, SupersededBy: e.SupersededBy}
	if d.EventID == (ulid.ULID{}) && r != nil {
		d.EventID = r.ID
	}
	return d
}

func pendingDisconnect(p projections.PendingEnd) *Disconnect {
	return &Disconnect{
		Cause: Cause(p.Cause), Reason: p.Reason, Reconnect: p.Reconnect, ReconnectAfter: p.ReconnectAfter,
		EventID: p.EventID, Actor: p.Actor, SupersededBy: p.SupersededBy,
	}
}

// fanOut queues a notification for every session it addresses on this
// node: one Frame, encoded once, for all of them.
func (s *Server) fanOut(r *ledger.Record) {
	ev := r.Event
	n := ev.GetNotificationSent()
	note := &hubpb.Notification{Seq: r.Seq, Topic: n.GetTopic(), Payload: n.GetPayload(), EventId: r.ID.String(), TimeUnixNano: r.Time.UnixNano()}
	frame := NewFrame(&hubpb.ServerFrame{Frame: &hubpb.ServerFrame_Notification{Notification: note}})
	var targets []*session
	s.mu.Lock()
	switch n.GetTarget() {
	case eventpb.NotificationTarget_NOTIFICATION_TARGET_SESSION:
		if sess := s.sessions[ev.GetSession()]; sess != nil {
			targets = append(targets, sess)
		}
	case eventpb.NotificationTarget_NOTIFICATION_TARGET_USER:
		for _, sess := range s.byUser[ev.GetUser()] {
			targets = append(targets, sess)
		}
	case eventpb.NotificationTarget_NOTIFICATION_TARGET_ALL:
		targets = make([]*session, 0, len(s.sessions))
		for _, sess := range s.sessions {
			targets = append(targets, sess)
		}
	}
	s.mu.Unlock()
	for _, sess := range targets {
		sess.deliver(frame)
	}
	if n.GetTarget() != eventpb.NotificationTarget_NOTIFICATION_TARGET_ALL {
		s.noteAffected(r.Seq, len(targets))
	} else {
		s.bcast.add(note)
	}
}

// noteAffected remembers how many sessions an event addressed, for the
// admin call that is waiting for it (bounded).
func (s *Server) noteAffected(seq uint64, n int) {
	s.affectedMu.Lock()
	defer s.affectedMu.Unlock()
	s.affected[seq] += n
	s.affectedQ = append(s.affectedQ, seq)
	if len(s.affectedQ) > 4096 {
		delete(s.affected, s.affectedQ[0])
		s.affectedQ = s.affectedQ[1:]
	}
}

func (s *Server) affectedBy(seq uint64) int {
	s.affectedMu.Lock()
	defer s.affectedMu.Unlock()
	return s.affected[seq]
}

func (s *Server) userLock(user string) *sync.Mutex {
	return &s.userLocks[maphash.String(s.seed, user)%uint64(len(s.userLocks))]
}

// register adds sess to the sessions this node holds, unless the node is
// full: the check and the add are one step, so concurrent connects cannot
// overshoot MaxSessions. Sessions in leaving (the ones this login
// supersedes) do not count: a user replacing their own session on a full
// node is let in.
func (s *Server) register(sess *session, leaving []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return ErrShuttingDown
	}
	n := len(s.sessions)
	for _, id := range leaving {
		if _, held := s.sessions[id]; held {
			n--
		}
	}
	if n >= s.cfg.MaxSessions {
		return errNodeFull
	}
	s.sessions[sess.id] = sess
	m := s.byUser[sess.user]
	if m == nil {
		m = make(map[string]*session)
		s.byUser[sess.user] = m
	}
	m[sess.id] = sess
	s.metrics.live.Set(float64(len(s.sessions)))
	return nil
}

func (s *Server) unregister(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forget(sess)
}

// forget is unregister with s.mu held.
func (s *Server) forget(sess *session) {
	if s.sessions[sess.id] != sess {
		return
	}
	delete(s.sessions, sess.id)
	if m := s.byUser[sess.user]; m != nil {
		delete(m, sess.id)
		if len(m) == 0 {
			delete(s.byUser, sess.user)
		}
	}
	s.metrics.live.Set(float64(len(s.sessions)))
}

// holds reports whether sess is still registered (its end not recorded).
func (s *Server) holds(sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[sess.id] == sess
}

// Live returns how many sessions this node holds.
func (s *Server) Live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// recoveryTimeout bounds crash recovery's wait for its ends to be
// recorded and applied: a start-up never waits without a deadline.
const recoveryTimeout = time.Minute

// recoverLost ends every session the log shows live on this node: none can
// be, since the node is only starting. A session the projections mark as
// pending an end (a kick, ban or supersede recorded before the crash, whose
// end was not) ends with that pending end: its cause, event id, actor,
// reason and reconnect advice, so the first cause wins as in the reducer
// and a resume is judged by it. Any other ends with cause lost.
func (s *Server) recoverLost(ctx context.Context) error {
	var lost []projections.Session
	s.proj.Read(func(st *projections.State) { lost = st.Sessions(projections.Filter{Node: s.cfg.Node}) })
	if len(lost) == 0 {
		return nil
	}
	evs, causes, pending := s.unheldEnds(lost, "hub restarted; the session was not closed")
	ctx, cancel := context.WithTimeout(ctx, recoveryTimeout)
	defer cancel()
	st, err := s.publish(ctx, evs...)
	if err != nil {
		return fmt.Errorf("record the ends of %d sessions: %w", len(evs), err)
	}
	first, last := st[0].Seq, st[len(st)-1].Seq
	if err := s.proj.WaitApplied(ctx, last); err != nil {
		return fmt.Errorf("wait for the projections to apply those ends (seq %d to %d): applied seq %d, head seq %d: %w",
			first, last, s.proj.Applied(), s.hist.Head().Seq, err)
	}
	for _, c := range causes {
		s.metrics.disconnects.WithLabelValues(c.String()).Inc()
	}
	s.log.Warn("ended sessions left open by an earlier run", "count", len(lost),
		"lost", len(lost)-pending, "ended_as_pending", pending)
	return nil
}

// unheldEnds are the end events of sessions the log shows live on this
// node and that this node does not hold: cause lost with reason, or the
// pending end the projections carry for one (a kick, ban or supersede
// recorded while it was live), and how many took a pending end.
func (s *Server) unheldEnds(lost []projections.Session, reason string) (evs []*eventpb.Event, causes []Cause, pending int) {
	evs = make([]*eventpb.Event, len(lost))
	causes = make([]Cause, len(lost))
	s.proj.Read(func(st *projections.State) {
		for i, l := range lost {
			cause, why := CauseLost, reason
			d := &Disconnect{Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED, Actor: "system"}
			if p, ok := st.Pending(l.ID); ok {
				d = pendingDisconnect(p)
				cause, why = d.Cause, d.Reason
				pending++
			}
			evs[i], causes[i] = endEvent(l.User, l.Device, l.ID, cause, why, d), cause
			evs[i].Node = s.cfg.Node
		}
	})
	return evs, causes, pending
}

// sweepOrphans records the end of each session the log has shown live on
// this node, while this node did not hold it, for OrphanAfter (see
// Config.OrphanAfter). seen holds when each was first seen so and is
// updated in place. A session being admitted is held (registered before
// its connect is published), and one ending is in s.ending until its
// end's publish returns, however long that takes. OrphanAfter, over two
// sweeps at least, covers the rest: the projections applying an end
// already published, and a session that ends between this sweep's read
// of the projections and its look at what the node holds.
func (s *Server) sweepOrphans(ctx context.Context, seen map[string]time.Time, now time.Time) {
	s.mu.Lock()
	held, closing := len(s.sessions)+len(s.ending), s.closing
	s.mu.Unlock()
	if closing {
		return // ends are being recorded by Shutdown; the next start sees the rest
	}
	var live []projections.Session
	s.proj.Read(func(st *projections.State) {
		if st.LiveOn(s.cfg.Node) <= held {
			return // it holds as many as the log shows live here: the usual case, found without a pass
		}
		live = st.Sessions(projections.Filter{Node: s.cfg.Node})
	})
	var due []projections.Session
	still := make(map[string]bool, len(seen))
	s.mu.Lock()
	for _, l := range live {
		if _, ok := s.sessions[l.ID]; ok {
			continue
		}
		if _, ok := s.ending[l.ID]; ok {
			continue
		}
		still[l.ID] = true
		first, ok := seen[l.ID]
		if !ok {
			seen[l.ID] = now
			continue
		}
		if now.Sub(first) >= s.cfg.OrphanAfter {
			due = append(due, l)
		}
	}
	s.mu.Unlock()
	for id := range seen {
		if !still[id] {
			delete(seen, id)
		}
	}
	if len(due) == 0 || s.pubErr() != nil {
		return // (while the log takes no appends, the next sweep after it does)
	}
	evs, causes, _ := s.unheldEnds(due, "the log shows the session live on this node, which does not hold it (a connect recorded after it was refused, or an end that could not be recorded)")
	keys := make([]string, len(evs))
	for i, l := range due {
		keys[i] = "unheld-" + l.ID // one end however often this is tried
	}
	ctx, cancel := context.WithTimeout(ctx, recoveryTimeout)
	defer cancel()
	if _, err := s.publishKeyed(ctx, keys, evs...); err != nil {
		s.log.Error("could not record the ends of sessions this node does not hold; trying again", "count", len(evs), "err", err)
		return
	}
	for i, l := range due {
		delete(seen, l.ID)
		s.metrics.disconnects.WithLabelValues(causes[i].String()).Inc()
	}
	s.log.Warn("recorded the ends of sessions the log showed live on this node, which did not hold them", "count", len(due))
}

// Shutdown stops taking sessions, tells every session to come back after a
// jittered delay, and waits for every end to be recorded. It returns by
// ctx's deadline: when only a reserve of it is left (a fifth, at most 2 s)
// the remaining connections are closed at once, their ends recorded as
// far as the log allows until the deadline. It is idempotent. Stop the
// transports after it, then the projection and the log.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	already := s.closing
	s.closing = true
	s.mu.Unlock()
	if already {
		return nil
	}
	s.health.Shutdown()
	close(s.shutdown)
	// Poke every session to see it. One registered after this never
	// serves: register refuses once closing is set.
	for _, sess := range s.held() {
		sess.poke()
	}
	done := make(chan struct{})
	go func() { s.handlers.Wait(); close(done) }()
	graceful, cancel := reserve(ctx)
	defer cancel()
	var err error
	select {
	case <-done:
	case <-graceful.Done():
		err = fmt.Errorf("hub shutdown: sessions did not end in time; closing the remaining connections: %w", graceful.Err())
		for _, sess := range s.held() {
			// Its worker may be stuck in a Send: give the end its cause
			// first, so the end recorded when the Send fails says why.
			sess.endWith(&Disconnect{Cause: CauseServerShutdown, Reason: "server shutting down (forced)",
				Reconnect: eventpb.Reconnect_RECONNECT_AFTER, ReconnectAfter: s.shutdownAdvice()}, true, time.Time{})
			sess.abort()
		}
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("%w; some session ends may be recorded as lost at the next start", err)
		}
	}
	close(s.stopBg)
	s.bg.Wait()
	s.rejects.flush()
	return err
}

// held returns the sessions this node holds.
func (s *Server) held() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		out = append(out, sess)
	}
	return out
}

// reserve returns a context that ends when only a reserve of ctx's time is
// left: a fifth of it, at most 2 s (none without a deadline).
func reserve(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	left := time.Until(deadline)
	return context.WithDeadline(ctx, deadline.Add(-min(left/5, 2*time.Second)))
}

// shutdownAdvice is the reconnect delay a session is given on shutdown.
func (s *Server) shutdownAdvice() time.Duration {
	return s.cfg.ShutdownReconnect + time.Duration(rand.Int64N(int64(s.cfg.ShutdownJitter)+1))
}

// Node is the name this hub records its sessions under.
func (s *Server) Node() string { return s.cfg.Node }
