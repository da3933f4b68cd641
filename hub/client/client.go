package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// Notification is one notification addressed to this client's user, to
// its session or to everyone.
type Notification struct {
	// Seq is the notification's ledger sequence number: acknowledge it with
	// Client.Ack. Seqs increase; they are not dense (other events sit
	// between them).
	Seq     uint64
	Topic   string
	Payload []byte
	// EventID is the ULID of the notification_sent event; Time is when it
	// was recorded.
	EventID string
	Time    time.Time
	// Redelivered is true for a notification missed while disconnected and
	// redelivered after a resume.
	Redelivered bool
}

// Session describes the session the server welcomed.
type Session struct {
	ID string
	// ResumeSecret proves ownership of the session to resume it.
	ResumeSecret string
	// ResumedFrom is the session this one resumed ("" for a fresh connect).
	ResumedFrom string
	// HeartbeatInterval is how often the server pings.
	HeartbeatInterval time.Duration
	// EventID and Seq name the session_connected or session_reconnected
	// event.
	EventID string
	Seq     uint64
	// TokenExpires is when the session's token expires, as the server
	// said (zero without a token); a refresh moves it (Client.Session
	// shows the latest).
	TokenExpires time.Time
	// Redelivering is how many missed notifications follow the welcome.
	Redelivering int
	// OldestRedelivered is the seq of the first of them (0: none).
	OldestRedelivered uint64
	// RedeliveryIncomplete is true when notifications addressed to this
	// client may have been lost to it: the application should resync from
	// its own source of truth. For a resume it is the server's
	// redelivery_truncated: notifications after the resume's last
	// acknowledged seq and before OldestRedelivered may be missing (more
	// than the server's redelivery limit, 1000 by default, older than it
	// searches, or the server could not read its ledger). For a fresh
	// session after an earlier one (a refused resume, one given with
	// WithResume included) it is always true: nothing recorded between the
	// earlier session's last acknowledged seq and this connect is
	// redelivered.
	RedeliveryIncomplete bool
	// LogRewound is true when the server's log no longer holds the last
	// notification this client saw: it was restored from a backup taken
	// before. The client then forgets the seqs it saw (new notifications
	// reuse them), and the server redelivers the session's notifications
	// from its start, some of which the application may have seen.
	LogRewound bool
	// Addr is the address of the node holding the session (one of those
	// given to Dial).
	Addr string
}

// Resume is what it takes to resume a session: save it (Client.Resume) to
// resume across a process restart (WithResume).
type Resume struct {
	SessionID    string
	Secret       string
	LastAckedSeq uint64
	// LastSeenSeq and LastSeenEventID name the last notification the
	// client handed to the application, so a server whose log was restored
	// from an older backup can tell (Session.LogRewound).
	LastSeenSeq     uint64
	LastSeenEventID string
}

// Stats counts what the client has done so far.
type Stats struct {
	// Connects counts welcomes, the first connect included; Resumes those
	// that resumed an earlier session.
	Connects, Resumes int
	// Delivered counts notifications handed to the application,
	// Redelivered those of them that were redelivered after a resume, and
	// Duplicates notifications dropped because their seq was not above the
	// last one delivered.
	Delivered, Redelivered, Duplicates uint64
}

// Client holds one logical session with a hub: it connects, hands
// notifications to the application, answers pings, and after a disconnect
// comes back as the server advises, resuming the session so missed
// notifications are redelivered. Create it with Dial; it is safe for
// concurrent use.
type Client struct {
	cfg     config
	backoff Backoff
	addr    string
	addrs   []string // every node the client knows; addr is addrs[cur]
	cur     int
	ownConn bool
	// conn and hub are replaced (own connection only) after a silent
	// stream; Dial, then the run goroutine, use them.
	conn *grpc.ClientConn
	hub  hubpb.HubClient

	baseCancel  context.CancelFunc // ends every stream (after Goodbye, or forced)
	closing     context.Context    // done once Close was called, or the network side ended
	closeCancel context.CancelFunc
	closeErr    error         // set by the run goroutine before netDone closes
	netDone     chan struct{} // closed once run and its streams' goroutines ended
	done        chan struct{} // closed by the dispatcher after netDone, once it drained

	q     *queue // what the dispatcher hands to the application (dispatch.go)
	notes chan Notification
	discs chan Disconnect

	mu         sync.Mutex
	token      string // what Hello sends: WithToken's, then the latest refreshed
	sess       Session
	resume     *Resume // what the next connect resumes; nil: connect afresh
	hadSession bool    // a session existed before (WithResume counts): a fresh one is a gap
	lastAcked  uint64
	ackFloor   uint64 // seq of the first fresh connect: nothing before it is ours
	// What the process WithResume resumed for had handed to its
	// application last: reported until this client hands one over (see
	// last), forgotten when the log rewound.
	resumedSeen   uint64
	resumedSeenID string
	live          *stream
	closedByApp   bool
	err           *Disconnect // why the client ended (run's verdict); Err shows it once done closed

	// last is the last notification this client handed to the
	// application (nil: none yet, or forgotten because the log rewound):
	// the one record of the last delivered seq. Only the dispatcher
	// stores one, without a lock; its duplicate check, Resume and a
	// resuming Hello read it. (It keeps that one notification's payload.)
	last atomic.Pointer[hubpb.Notification]
	// The dispatcher's (Dial's before it starts): nothing at or below
	// floor is handed over either, whatever last says: a fresh session's
	// connect seq (earlier notifications were never addressed to it), and
	// at first the ack WithResume brought.
	floor uint64

	connects, resumes                  atomic.Int64
	delivered, redelivered, duplicates atomic.Uint64
}

// handshakeTimeout bounds a reconnect attempt from opening the stream to
// the Welcome (Dial's first connect is bounded by its ctx as well).
const handshakeTimeout = 30 * time.Second

// DialOptions returns the gRPC dial options, transport credentials aside,
// that the client gives a connection it dials itself; give them to a
// connection shared through WithConn for the same behaviour. Keepalive:
// after 20s without a frame gRPC pings, and drops the connection if the
// ping is not answered within 10s. hubd allows client pings every 5s (its
// enforcement policy's MinTime); the hub's own pings (every heartbeat
// interval, 10s by default) usually keep gRPC's from being needed at all.
// This catches a dead connection between streams and during a handshake,
// where the stream watchdog does not run. Connect backoff: gRPC's, capped
// at b.Max (after defaults; gRPC's own cap is 2 minutes, during which
// attempts fail fast whatever the client's schedule says). Flow control:
// static windows (64 KiB per stream, 1 MiB per connection) instead of
// gRPC's dynamic ones, whose bandwidth estimate pings the server after
// every burst of data it receives: a ping and a window update per
// notification on a quiet connection, for a window a hub's small frames
// never need to grow.
func DialOptions(b Backoff) []grpc.DialOption {
	bc := backoff.DefaultConfig
	bc.MaxDelay = min(bc.MaxDelay, b.withDefaults().Max)
	return []grpc.DialOption{
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 20 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 20 * time.Second}),
		grpc.WithStaticStreamWindowSize(65535), grpc.WithStaticConnWindowSize(1 << 20),
	}
}

// Dial connects to the hub at addr and returns once the server welcomed the
// session. ctx bounds only this first connect. If the server refuses, Dial
// returns the refusal as a *Disconnect (Cause CauseRejected, with the
// server's code, reason and advice); it does not retry a first connect,
// but for one node that cannot be reached.
// Afterwards the client reconnects by itself until Close, or until the
// server says not to come back.
//
// addr may list several nodes of a cluster, separated by commas
// ("a:7070,b:7070,c:7070"). The client starts at the first one it can
// reach and moves to the next when its node is gone (the connection was
// lost, the node shut down or drained, or it refused for being full or
// unavailable), still honouring the reconnect advice it was given; a
// resume works on any node. With WithConn the connection is the
// application's, and addr is only reported.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	addrs := strings.Split(addr, ",")
	for i := range addrs {
		addrs[i] = strings.TrimSpace(addrs[i])
	}
	c := &Client{
		cfg: cfg, backoff: cfg.backoff.withDefaults(), conn: cfg.conn, addr: addrs[0], addrs: addrs,
		netDone: make(chan struct{}), done: make(chan struct{}), q: newQueue(),
		notes: make(chan Notification, cfg.buffer), discs: make(chan Disconnect, 32),
	}
	if c.conn == nil {
		conn, err := c.dial()
		if err != nil {
			return nil, err
		}
		c.conn, c.ownConn = conn, true
	}
	c.hub = hubpb.NewHubClient(c.conn)
	if r := cfg.resume; r != nil {
		c.resume, c.hadSession = r, true
		c.lastAcked, c.floor = r.LastAckedSeq, r.LastAckedSeq
		c.resumedSeen, c.resumedSeenID = r.LastSeenSeq, r.LastSeenEventID
	}
	c.token = cfg.token
	base, baseCancel := context.WithCancel(context.Background())
	c.closing, c.closeCancel = context.WithCancel(context.Background())
	c.baseCancel = baseCancel

	ls, d := c.connect(base, ctx)
	for tried := 1; d != nil && tried < len(c.addrs) && movesOn(d) && ctx.Err() == nil; tried++ {
		c.nextAddr()
		ls, d = c.connect(base, ctx)
	}
	if d != nil && cfg.resume != nil && d.RejectCode == "resume_refused" && d.Reconnect == ReconnectAllowed {
		// Reported as what it is: a failed attempt after which the client
		// connects afresh at once.
		d.Attempt, d.WillReconnect = 1, true
		c.report(*d)
		c.dropResume()
		ls, d = c.connect(base, ctx)
	}
	if d != nil {
		baseCancel()
		c.closeCancel()
		if c.ownConn {
			c.conn.Close()
		}
		// Nothing was started: what was queued (a refused resume's
		// OnDisconnect) is handled here, on the caller's goroutine.
		c.q.close()
		c.dispatch()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("client: connect: %w", ctx.Err())
		}
		return nil, d
	}
	go c.dispatch()
	go c.run(base, ls)
	return c, nil
}

// dial opens the client's own connection: TLS or plaintext, DialOptions,
// then the application's WithDialOptions.
func (c *Client) dial() (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if c.cfg.tls != nil {
		creds = credentials.NewTLS(c.cfg.tls)
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, DialOptions(c.backoff)...)
	conn, err := grpc.NewClient(c.addr, append(opts, c.cfg.dialOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", c.addr, err)
	}
	return conn, nil
}

// movesOn reports an end after which a client that knows several nodes
// tries the next one: its node is gone, stopping, or will not take it.
func movesOn(d *Disconnect) bool {
	switch d.Cause {
	case CauseLost, CauseServerShutdown, CauseDrained:
		return true
	case CauseRejected:
		switch d.RejectCode {
		case "node_full", "draining", "unavailable":
			return true
		}
	}
	return false
}

// nextAddr moves the client's own connection to the next node it knows.
func (c *Client) nextAddr() {
	if !c.ownConn || len(c.addrs) < 2 {
		return
	}
	c.cur = (c.cur + 1) % len(c.addrs)
	c.addr = c.addrs[c.cur]
	c.cfg.logger.Info("moving to another node", "addr", c.addr)
	c.redial()
}

// redial replaces the client's own connection after a stream went silent:
// the transport under it is presumably dead, and a new stream on it would
// wait for gRPC's keepalive to notice. A shared connection (WithConn) is
// the application's and is left alone.
func (c *Client) redial() {
	if !c.ownConn {
		return
	}
	conn, err := c.dial()
	if err != nil {
		c.cfg.logger.Warn("hub connection not replaced", "err", err)
		return
	}
	old := c.conn
	c.conn, c.hub = conn, hubpb.NewHubClient(conn)
	old.Close()
}

// Notifications returns the channel notifications arrive on, in seq order
// and without duplicates; it is closed when the client ends. Read it
// promptly. The client keeps reading the stream while the channel is full
// (so pings are answered and a disconnect is reported at once), holding up
// to 512 notifications the application has not taken; beyond that it ends
// the session itself as CauseSlowConsumer and resumes. When a session
// ends, what the application has not taken (beyond what fits in the
// channel) is dropped unacknowledged. The resume redelivers what was
// recorded after the last acknowledged seq, up to the server's redelivery
// limit (1000 by default, the newest): 512 is kept below it so that what
// the client dropped fits in it; when it does not, the new Session's
// RedeliveryIncomplete says so. Nothing arrives on it when OnNotification
// is set.
func (c *Client) Notifications() <-chan Notification { return c.notes }

// Disconnects returns a channel that receives every Disconnect (the same
// ones OnDisconnect gets), the last one with WillReconnect false; it is
// closed when the client ends. It holds the 32 latest: when the
// application does not read it, older ones are dropped rather than holding
// up reconnection.
func (c *Client) Disconnects() <-chan Disconnect { return c.discs }

// Done is closed when the client has ended: after Close, or after a
// disconnect it will not come back from, once every callback has returned
// and the channels are closed.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns, once Done is closed, why the client ended: nil after Close,
// else the *Disconnect it did not reconnect from (its Cause tells kicked,
// banned, superseded, rejected and lost apart). Before that it returns nil.
func (c *Client) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		return nil
	}
	return c.err
}

// Session returns the current (or last) session.
func (c *Client) Session() Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

// Resume returns what it takes to resume the current session later,
// including the highest acknowledged seq.
func (c *Client) Resume() Resume {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen, seenID := c.seenLocked()
	return Resume{SessionID: c.sess.ID, Secret: c.sess.ResumeSecret, LastAckedSeq: max(c.lastAcked, c.ackFloor),
		LastSeenSeq: seen, LastSeenEventID: seenID}
}

// seenLocked returns the seq and event id of the last notification handed
// to the application: by this client, else by the process WithResume
// resumed for. c.mu is held.
func (c *Client) seenLocked() (uint64, string) {
	if n := c.last.Load(); n != nil {
		return n.GetSeq(), n.GetEventId()
	}
	return c.resumedSeen, c.resumedSeenID
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{Connects: int(c.connects.Load()), Resumes: int(c.resumes.Load()),
		Delivered: c.delivered.Load(), Redelivered: c.redelivered.Load(), Duplicates: c.duplicates.Load()}
}

// Ack acknowledges every notification up to seq. The highest acknowledged
// seq is what a resume asks redelivery after, so acknowledge a
// notification once it is processed. Ack never blocks: it records seq and
// the client's writer sends it on the current stream (acks are
// cumulative, so only the highest is sent); while disconnected, or if the
// stream ends before the ack went out, the resume carries it. It may be
// called from any goroutine, callbacks included, even after the client
// ended (Resume then includes it).
func (c *Client) Ack(seq uint64) {
	c.mu.Lock()
	if seq > c.lastAcked {
		c.lastAcked = seq
	}
	ls := c.live
	c.mu.Unlock()
	if ls != nil {
		ls.poke()
	}
}

// Close ends the client: it sends Goodbye (the server records the end as
// client_closed), waits for the server to end the stream (at most the
// close timeout, then cuts it), stops any reconnect wait, and returns
// once the connection side has ended, with an error only if the stream
// had to be cut. It never waits for the application's callbacks, so it
// may be called from any goroutine: from a callback (OnDisconnect,
// OnNotification, OnConnect, OnFrame), or from a goroutine a callback
// waits for. No notification is handed over once Close was called;
// callbacks already running or queued (the final OnDisconnect) still
// run, and Done closes, with the channels, once they have. It is
// idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closedByApp = true
	c.mu.Unlock()
	c.closeCancel()
	<-c.netDone
	return c.closeErr
}

func (c *Client) dropResume() {
	c.mu.Lock()
	c.resume = nil
	c.mu.Unlock()
}

// connect opens a stream under base, sends Hello (with a resume when
// there is a session to resume) and waits for Welcome. bound ends only the
// handshake.
func (c *Client) connect(base, bound context.Context) (*stream, *Disconnect) {
	sctx, cancel := context.WithCancel(base)
	hctx, hcancel := context.WithTimeout(bound, handshakeTimeout)
	defer hcancel()
	stop := context.AfterFunc(hctx, cancel)
	defer stop()
	fail := func(err error) (*stream, *Disconnect) {
		cancel()
		d := classify(nil, err, false)
		if errors.Is(hctx.Err(), context.DeadlineExceeded) && bound.Err() == nil {
			d.Reason = "no Welcome within " + handshakeTimeout.String()
		}
		return nil, d
	}
	token, err := c.helloToken(hctx)
	if err != nil {
		cancel()
		return nil, &Disconnect{Cause: CauseLost, Reconnect: ReconnectAllowed, Reason: "token source: " + err.Error()}
	}
	st, err := c.hub.Connect(sctx)
	if err != nil {
		return fail(err)
	}
	hello := &hubpb.Hello{User: c.cfg.user, Device: c.cfg.device, Token: token}
	var helloAck uint64
	c.mu.Lock()
	if r := c.resume; r != nil {
		helloAck = max(c.lastAcked, c.ackFloor)
		seen, seenID := c.seenLocked()
		hello.Resume = &hubpb.Resume{SessionId: r.SessionID, Secret: r.Secret, LastAckedSeq: helloAck,
			LastSeenSeq: seen, LastSeenEventId: seenID}
	}
	c.mu.Unlock()
	if err := st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: hello}}); err != nil && !errors.Is(err, io.EOF) {
		return fail(err)
	} // on io.EOF the stream ended: Recv returns its status.
	f, err := st.Recv()
	if err != nil {
		return fail(err)
	}
	if c.cfg.onFrame != nil {
		c.q.push(event{kind: evFrame, frame: f})
	}
	w := f.GetWelcome()
	if w == nil {
		cancel()
		return nil, &Disconnect{Cause: CauseLost, Reconnect: ReconnectAllowed, Reason: "protocol error: the first server frame is not Welcome"}
	}
	sess := Session{ID: w.GetSessionId(), ResumeSecret: w.GetResumeSecret(), ResumedFrom: w.GetResumedFrom(),
		HeartbeatInterval: time.Duration(w.GetHeartbeatIntervalMs()) * time.Millisecond,
		EventID:           w.GetEventId(), Seq: w.GetSeq(), Redelivering: int(w.GetRedelivering()), TokenExpires: unixTime(w.GetTokenExpiresUnixNano()),
		OldestRedelivered: w.GetOldestRedeliveredSeq(), RedeliveryIncomplete: w.GetRedeliveryTruncated(), Addr: c.addr,
		LogRewound: w.GetLogRewound()}
	ls := newStream(st, sctx, cancel)
	ls.session, ls.hb, ls.welcomed = sess.ID, sess.HeartbeatInterval, time.Now()
	ls.tokenExp, ls.tokenKnown = sess.TokenExpires, ls.welcomed
	ls.lastRecv.Store(ls.welcomed.UnixNano())
	c.mu.Lock()
	gap := sess.ResumedFrom == "" && c.hadSession
	if gap {
		// The earlier session's notifications since its last ack are not
		// redelivered to a fresh one.
		sess.RedeliveryIncomplete = true
	}
	if sess.LogRewound {
		// The seqs this client saw were given again to other records: what
		// it acked or saw says nothing about the log it resumed on (the
		// dispatcher lowers its floor likewise). run waited for the
		// dispatcher to hand over what it had, so none is handed over
		// after last is cleared.
		c.lastAcked, c.ackFloor, c.resumedSeen, c.resumedSeenID, helloAck = 0, 0, 0, "", 0
		c.last.Store(nil)
	}
	c.sess, c.hadSession = sess, true
	c.resume = &Resume{SessionID: sess.ID, Secret: sess.ResumeSecret}
	if sess.ResumedFrom == "" {
		// A fresh session gets the notifications recorded after its
		// connect; earlier ones were never addressed to it (the
		// dispatcher raises its floor likewise).
		c.ackFloor = max(c.ackFloor, sess.Seq)
		helloAck = c.ackFloor
	}
	// The server knows helloAck; the writer sends any later Ack (one made
	// during the handshake included: the writer starts with a token).
	ls.sentAck = helloAck
	ls.poke()
	c.live = ls
	c.mu.Unlock()
	c.connects.Add(1)
	if sess.ResumedFrom != "" {
		c.resumes.Add(1)
	}
	c.cfg.logger.Info("hub session started", "session", sess.ID, "resumed_from", sess.ResumedFrom, "redelivering", sess.Redelivering)
	switch {
	case sess.LogRewound:
		c.cfg.logger.Warn("the hub's log no longer holds what this client saw (restored from an older backup): the seqs seen are forgotten and the session's notifications are redelivered from its start", "session", sess.ID)
	case gap:
		c.cfg.logger.Warn("hub session started afresh: notifications since the last ack of the earlier session are not redelivered", "session", sess.ID)
	case sess.RedeliveryIncomplete:
		c.cfg.logger.Warn("hub resumed without every missed notification", "session", sess.ID,
			"last_acked", helloAck, "oldest_redelivered", sess.OldestRedelivered)
	}
	// OnConnect runs on the dispatcher, while the stream is served: a slow
	// one does not leave the server's pings unanswered.
	c.q.push(event{kind: evConnect, sess: &sess})
	return ls, nil
}

// run owns the network side from the first welcome to the end: it serves
// each stream, and between streams decides, reports and waits. It never
// waits for the application, but before connecting again it lets the
// dispatcher catch up with the previous session (or Close end the wait),
// so an application stuck in a callback does not get one session after
// another thrown out for not keeping up, and the client never holds more
// than one session's backlog.
//
// Two counts drive the decision. failed counts the connect attempts that
// failed in a row (Disconnect.Attempt, WithMaxAttempts); it restarts at
// every Welcome. step, the backoff exponent, counts every attempt since a
// session last lasted Backoff.Max: a session the server accepts and ends
// at once (repeated kicks, a slow consumer that cannot keep up) is no
// better than a failed attempt, and restarting the backoff at each
// Welcome would bring such a client back every Base forever.
func (c *Client) run(base context.Context, ls *stream) {
	defer c.endNetwork()
	step := 0
	for {
		d, silent := c.serve(ls)
		if silent {
			c.redial()
		}
		if time.Since(ls.welcomed) >= c.backoff.Max {
			step = 0
		}
		for failed := 0; ; {
			if c.closing.Err() != nil && d.Cause == CauseLost {
				d = &Disconnect{Cause: CauseClosed, Reason: "closed by the client", Session: d.Session, Code: d.Code}
			}
			c.plan(d, step, failed)
			c.report(*d)
			if !d.WillReconnect {
				c.stop(d)
				return
			}
			if d.RejectCode == "resume_refused" && d.Reconnect == ReconnectAllowed {
				c.dropResume() // the session cannot be resumed: connect afresh
			}
			if c.cfg.sleep(c.closing, d.Delay) != nil || !c.q.waitIdle(c.closing) || c.closing.Err() != nil {
				c.report(Disconnect{Cause: CauseClosed, Reason: "closed by the client while waiting to reconnect", Attempt: failed})
				return
			}
			step++
			if movesOn(d) {
				c.nextAddr()
			}
			if ls, d = c.connect(base, c.closing); d == nil {
				break
			}
			failed++
		}
	}
}

// plan decides whether and when to reconnect after d: failed is the
// number of failed attempts in a row (d's included), step the backoff
// exponent (see run).
func (c *Client) plan(d *Disconnect, step, failed int) {
	d.Attempt = failed
	d.WillReconnect, d.Delay = false, 0
	switch {
	case c.closing.Err() != nil, !c.cfg.reconnect:
		return
	case d.Cause == CauseClosed, d.Cause == CauseSuperseded:
		return
	case d.Reconnect == ReconnectNotAllowed:
		return
	case c.cfg.maxAttempts > 0 && failed >= c.cfg.maxAttempts:
		return
	}
	if d.Reconnect == ReconnectAfter {
		if c.cfg.maxWait > 0 && d.ReconnectAfter > c.cfg.maxWait {
			return
		}
		d.Delay = c.backoff.After(d.ReconnectAfter, step, c.cfg.rand())
	} else {
		d.Delay = c.backoff.Delay(step, c.cfg.rand())
	}
	d.WillReconnect = true
}

// report queues d for the application: OnDisconnect, then the
// Disconnects channel (dropping the oldest entry when it is full).
func (c *Client) report(d Disconnect) {
	c.cfg.logger.Info("hub session ended", "cause", d.Cause.String(), "reason", d.Reason, "reconnect", d.Reconnect.String(),
		"event_id", d.EventID, "will_reconnect", d.WillReconnect, "delay", d.Delay, "attempt", d.Attempt)
	c.q.push(event{kind: evDisconnect, disc: &d})
}

// stop records why the client ends, for Err once Done is closed.
func (c *Client) stop(d *Disconnect) {
	c.mu.Lock()
	if !c.closedByApp && d.Cause != CauseClosed {
		c.err = d
	}
	c.mu.Unlock()
}

// endNetwork ends the network side, on run's way out: no stream and no
// connection is left, Close returns, and the dispatcher ends once it has
// handled what was queued.
func (c *Client) endNetwork() {
	c.baseCancel()
	c.closeCancel()
	if c.ownConn {
		c.conn.Close()
	}
	c.mu.Lock()
	c.live = nil
	c.mu.Unlock()
	c.q.close()
	close(c.netDone)
}
