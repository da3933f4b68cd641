package hub

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// Server is the hub: it serves Hub.Connect streams and the Admin API,
// records every intent in the ledger before it takes effect, and enforces
// kicks, bans and supersedes from the projections.
type Server struct {
	hubpb.UnimplementedHubServer
	hubpb.UnimplementedAdminServer

	cfg     Config
	store   *ledger.Store
	pub     *ledger.Publisher
	proj    *projections.Runner
	log     interface{ Error(string, ...any) }
	metrics *metrics
	health  *health.Server
	lis     *Listener

	mu       sync.Mutex
	sessions map[string]*session            // live sessions held by this node
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

	// epoch carries a monotonic reading: ping schedules are offsets from
	// it, so a wall-clock step cannot stop or bunch pings.
	epoch time.Time
}

// mono is the time since s.epoch on the monotonic clock.
func (s *Server) mono() int64 { return int64(time.Since(s.epoch)) }

// New opens the hub over store: it starts the projection runner (replaying
// from its checkpoint), then ends with cause lost every session the log
// shows live on this node (a crash left them open). Call Shutdown to stop.
func New(ctx context.Context, store *ledger.Store, cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("hub config: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		store:    store,
		pub:      ledger.NewPublisher(store),
		log:      cfg.Logger,
		metrics:  newMetrics(),
		health:   health.NewServer(),
		sessions: make(map[string]*session),
		byUser:   make(map[string]map[string]*session),
		shutdown: make(chan struct{}),
		seed:     maphash.MakeSeed(),
		affected: make(map[uint64]int),
		stopBg:   make(chan struct{}),
		epoch:    time.Now(),
	}
	s.rates = newRateLimiter(cfg.UserConnectsPerMinute, time.Minute)
	s.rejects = newRejects(s)
	pc := cfg.Projections
	pc.OnChange = s.onChange
	if pc.Logger == nil {
		pc.Logger = cfg.Logger
	}
	s.bcast = &broadcasts{limit: cfg.RedeliveryLimit}
	if err := s.bcast.load(ctx, store); err != nil {
		return nil, fmt.Errorf("hub: read recent broadcasts: %w", err)
	}
	s.proj = projections.NewRunner(store, pc)
	s.metrics.watch(s)
	if err := s.proj.Start(ctx); err != nil {
		return nil, fmt.Errorf("hub: start projections: %w", err)
	}
	if err := s.recoverLost(ctx); err != nil {
		s.proj.Close()
		return nil, fmt.Errorf("hub: recover sessions lost in a crash: %w", err)
	}
	s.bg.Add(3)
	go s.rejects.loop()
	go s.watchHealth()
	go s.heartbeats()
	s.setServing(healthpb.HealthCheckResponse_SERVING)
	return s, nil
}

// healthInterval is how often the hub checks its ledger and projection
// runner for the health service.
const healthInterval = time.Second

// Err reports why the hub cannot serve, or nil: its ledger failed (it
// takes no more appends), its projection runner stopped following the log
// (nothing recorded would be enforced), or the runner has fallen behind
// the log (projections.ErrStalled: a durable record has waited longer than
// the runner's StallAfter; nothing recorded since is enforced). /healthz
// reports it; the gRPC health service turns NOT_SERVING within
// healthInterval, for good after a failure, until the runner catches up
// after a stall.
func (s *Server) Err() error {
	return errors.Join(s.failed(), s.proj.Stalled())
}

// failed reports the failures health never recovers from: the ledger's
// sticky failure and a runner that stopped.
func (s *Server) failed() error {
	var errs []error
	if err := s.store.Err(); err != nil {
		errs = append(errs, fmt.Errorf("ledger: %w", err))
	}
	if err := s.proj.Err(); err != nil {
		errs = append(errs, fmt.Errorf("projections: %w", err))
	}
	return errors.Join(errs...)
}

// heartbeats marks a ping due on every session whose heartbeat interval
// has passed since its last one, and wakes it: one ticker for the node
// instead of one per session. Pings are scheduled on the monotonic clock
// (a wall-clock step cannot stop them, and a test's Config.Now does not
// hold them back) and are up to a tick late; the session judges idleness
// by Config.Now when a ping falls due, so an idle end comes at most one
// interval and one tick after IdleTimeout.
func (s *Server) heartbeats() {
	defer s.bg.Done()
	t := time.NewTicker(heartbeatTick(s.cfg.HeartbeatInterval))
	defer t.Stop()
	var due []*session
	for {
		select {
		case <-t.C:
		case <-s.stopBg:
			return
		}
		now := s.mono()
		next := now + int64(s.cfg.HeartbeatInterval)
		s.mu.Lock()
		for _, sess := range s.sessions {
			if sess.nextPing.Load() <= now {
				sess.nextPing.Store(next)
				due = append(due, sess)
			}
		}
		s.mu.Unlock()
		for i, sess := range due {
			sess.pingDue.Store(true)
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

// watchHealth turns the health service NOT_SERVING, and logs why, once the
// ledger or the projection runner failed (for good), or while the runner
// is behind the log (SERVING again once it caught up).
func (s *Server) watchHealth() {
	defer s.bg.Done()
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	stalled := false
	for {
		select {
		case <-t.C:
			if err := s.failed(); err != nil {
				s.notServing()
				s.log.Error("the hub cannot serve; health reports NOT_SERVING until it is restarted", "err", err)
				return
			}
			switch err := s.proj.Stalled(); {
			case err != nil && !stalled:
				stalled = true
				s.notServing()
				s.log.Error("the projections are behind the log: nothing recorded since is enforced; health reports NOT_SERVING until they catch up", "err", err)
			case err == nil && stalled:
				stalled = false
				s.setServing(healthpb.HealthCheckResponse_SERVING)
				s.cfg.Logger.Info("the projections caught up with the log; health reports SERVING again")
			}
		case <-s.stopBg:
			return
		}
	}
}

func (s *Server) notServing() { s.setServing(healthpb.HealthCheckResponse_NOT_SERVING) }

func (s *Server) setServing(st healthpb.HealthCheckResponse_ServingStatus) {
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus("sessionledger.hub.v1.Hub", st)
}

// Projections returns the runner the hub enforces from (auditq's server
// side reads it).
func (s *Server) Projections() *projections.Runner { return s.proj }

// Health returns the gRPC health service to register.
func (s *Server) Health() *health.Server { return s.health }

// MetricsHandler serves the hub's Prometheus metrics.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
}

// Register registers the Hub, Admin and health services on g. Create g
// with ServerOptions() so admin calls are authenticated.
func (s *Server) Register(g *grpc.Server) {
	hubpb.RegisterHubServer(g, s)
	hubpb.RegisterAdminServer(g, s)
	healthpb.RegisterHealthServer(g, s.health)
}

// ServerOptions returns the interceptors the hub needs on its gRPC server.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(s.UnaryInterceptor), grpc.ChainStreamInterceptor(s.StreamInterceptor)}
}

// Serve serves g on l, tracking connections so abort-mode kicks can close
// them. It returns when g stops.
func (s *Server) Serve(g *grpc.Server, l *Listener) error {
	s.mu.Lock()
	s.lis = l
	s.mu.Unlock()
	return g.Serve(l)
}

// publish appends events durably through the ledger's watermill Publisher
// and returns their stamps (seq, id, time). ctx bounds only the wait for
// the ledger's writer to take them: once taken, they are committed or
// failed as a whole, and publish waits for which. An event the ledger
// refuses is ErrInvalid; any other failure is logged and returned as
// ErrLedger: the caller must not act.
func (s *Server) publish(ctx context.Context, events ...*eventpb.Event) ([]ledger.Stamp, error) {
	msgs := make([]*message.Message, len(events))
	for i, ev := range events {
		if ev.Node == "" {
			ev.Node = s.cfg.Node
		}
		b, err := proto.Marshal(ev)
		if err != nil {
			return nil, err
		}
		msgs[i] = message.NewMessage(watermill.NewULID(), b)
		msgs[i].SetContext(ctx)
	}
	start := time.Now()
	if err := s.pub.Publish(ledger.EventsTopic, msgs...); err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// The caller gave up before the writer took the events:
			// nothing was written and the ledger is fine.
			return nil, fmt.Errorf("publish: %w", ctx.Err())
		}
		if errors.Is(err, ledger.ErrInvalidEvent) {
			// Nothing was written and the ledger is fine: the request
			// was bad (the Admin and Hello limits are meant to catch it
			// first).
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		s.metrics.appendFailures.Inc()
		s.log.Error("ledger append failed; refusing the action", "err", err)
		if s.store.Err() != nil {
			// The ledger takes no more appends until it is reopened:
			// tell load balancers and operators through health now,
			// not at the next health check.
			s.notServing()
		}
		return nil, fmt.Errorf("%w: %v", ErrLedger, err)
	}
	s.metrics.appendSeconds.Observe(time.Since(start).Seconds())
	out := make([]ledger.Stamp, len(msgs))
	for i, m := range msgs {
		seq, err := strconv.ParseUint(m.Metadata.Get(ledger.MetadataSeq), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: publish returned no seq", ErrLedger)
		}
		id, _ := ulid.ParseStrict(m.Metadata.Get(ledger.MetadataID))
		t, _ := time.Parse(time.RFC3339Nano, m.Metadata.Get(ledger.MetadataTime))
		out[i] = ledger.Stamp{Seq: seq, ID: id, Time: t}
	}
	return out, nil
}

// publishApplied publishes and waits until the projections applied the
// last event (and the hub's enforcement for it began).
func (s *Server) publishApplied(ctx context.Context, events ...*eventpb.Event) ([]ledger.Stamp, error) {
	st, err := s.publish(ctx, events...)
	if err != nil {
		return nil, err
	}
	if err := s.proj.WaitApplied(ctx, st[len(st)-1].Seq); err != nil {
		return st, fmt.Errorf("%w: projections: %v", ErrLedger, err)
	}
	return st, nil
}

// onChange runs on the projection runner's goroutine for every applied
// record: it enforces pending ends on sessions this node holds and fans
// notifications out. It never blocks.
func (s *Server) onChange(ch projections.Change) {
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
}

func pendingDisconnect(p projections.PendingEnd) *Disconnect {
	return &Disconnect{
		Code: codeOfCause(p.Cause), Reason: p.Reason, Reconnect: wireReconnect(p.Reconnect), ReconnectAfter: p.ReconnectAfter,
		EventID: p.EventID.String(), Actor: p.Actor, SupersededBy: p.SupersededBy,
	}
}

func (s *Server) fanOut(r *ledger.Record) {
	ev := r.Event
	n := ev.GetNotificationSent()
	frame := &hubpb.Notification{Seq: r.Seq, Topic: n.GetTopic(), Payload: n.GetPayload(), EventId: r.ID.String(), TimeUnixNano: r.Time.UnixNano()}
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
		s.bcast.add(frame)
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
	pending := map[string]projections.PendingEnd{}
	s.proj.Read(func(st *projections.State) {
		lost = st.Sessions(projections.Filter{Node: s.cfg.Node})
		for _, l := range lost {
			if p, ok := st.Pending(l.ID); ok {
				pending[l.ID] = p
			}
		}
	})
	if len(lost) == 0 {
		return nil
	}
	evs := make([]*eventpb.Event, len(lost))
	causes := make([]eventpb.DisconnectCause, len(lost))
	for i, l := range lost {
		cause, reason := eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST, "hub restarted; the session was not closed"
		d := &Disconnect{Reconnect: hubpb.Reconnect_RECONNECT_ALLOWED, Actor: "system"}
		if p, ok := pending[l.ID]; ok {
			cause, reason, d = p.Cause, p.Reason, pendingDisconnect(p)
		}
		evs[i], causes[i] = endEvent(l.User, l.Device, l.ID, cause, reason, d), cause
	}
	ctx, cancel := context.WithTimeout(ctx, recoveryTimeout)
	defer cancel()
	st, err := s.publish(ctx, evs...)
	if err != nil {
		return fmt.Errorf("record the ends of %d sessions: %w", len(evs), err)
	}
	first, last := st[0].Seq, st[len(st)-1].Seq
	if err := s.proj.WaitApplied(ctx, last); err != nil {
		return fmt.Errorf("wait for the projections to apply those ends (seq %d to %d): applied seq %d, head seq %d: %w",
			first, last, s.proj.Applied(), s.store.Head().Seq, err)
	}
	for _, c := range causes {
		s.metrics.disconnects.WithLabelValues(causeLabel(c)).Inc()
	}
	s.cfg.Logger.Warn("ended sessions left open by an earlier run", "count", len(lost),
		"lost", len(lost)-len(pending), "ended_as_pending", len(pending))
	return nil
}

// Shutdown stops taking sessions, tells every session to come back after a
// jittered delay, records every end, and stops the projections. If ctx
// ends first, the remaining connections are closed at once (their ends are
// still recorded, as far as the ledger allows). It is idempotent. Stop the
// gRPC server after it and close the ledger last.
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
	// Wake every session to see it. One registered after this never
	// serves: register refuses once closing is set.
	s.mu.Lock()
	for _, sess := range s.sessions {
		sess.poke()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.handlers.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("hub shutdown: %w; closing remaining connections", ctx.Err())
		// abort takes s.mu itself: collect first, abort after.
		s.mu.Lock()
		live := make([]*session, 0, len(s.sessions))
		for _, sess := range s.sessions {
			live = append(live, sess)
		}
		s.mu.Unlock()
		for _, sess := range live {
			// Its handler may be stuck in a Send: give the end its cause
			// first, so the end recorded when the Send fails says why.
			sess.endWith(&Disconnect{Code: hubpb.DisconnectCode_DISCONNECT_CODE_SERVER_SHUTDOWN, Reason: "server shutting down (forced)",
				Reconnect: hubpb.Reconnect_RECONNECT_AFTER, ReconnectAfter: s.shutdownAdvice()}, true, time.Time{})
			sess.abort()
		}
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	close(s.stopBg)
	s.bg.Wait()
	s.rejects.flush()
	return errors.Join(err, s.proj.Close())
}

// shutdownAdvice is the reconnect delay a session is given on shutdown.
func (s *Server) shutdownAdvice() time.Duration {
	return s.cfg.ShutdownReconnect + time.Duration(rand.Int64N(int64(s.cfg.ShutdownJitter)+1))
}
