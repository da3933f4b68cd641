package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

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
	// Redelivering is how many missed notifications follow the welcome.
	Redelivering int
}

// Resume is what it takes to resume a session: save it (Client.Resume) to
// resume across a process restart (WithResume).
type Resume struct {
	SessionID    string
	Secret       string
	LastAckedSeq uint64
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
	hub     hubpb.HubClient
	conn    *grpc.ClientConn
	ownConn bool

	baseCancel  context.CancelFunc // ends every stream (after Goodbye, or forced)
	closeCancel context.CancelFunc // Close was called: stop waiting and connecting
	closeOnce   sync.Once
	closeErr    error
	done        chan struct{}

	notes chan Notification
	discs chan Disconnect

	mu          sync.Mutex
	sess        Session
	resume      *Resume // what the next connect resumes; nil: connect afresh
	lastAcked   uint64
	ackFloor    uint64 // seq of the first fresh connect: nothing before it is ours
	live        *stream
	closedByApp bool
	err         *Disconnect

	// Touched only by the goroutine that owns the stream (Dial, then run).
	lastDelivered uint64

	connects, resumes                  atomic.Int64
	delivered, redelivered, duplicates atomic.Uint64
}

// stream is one Hub.Connect stream.
type stream struct {
	st       hubpb.Hub_ConnectClient
	cancel   context.CancelFunc
	session  string
	welcomed time.Time
	sendMu   sync.Mutex // gRPC allows one sender at a time
}

func (s *stream) send(f *hubpb.ClientFrame) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.st.Send(f)
}

// Dial connects to the hub at addr and returns once the server welcomed the
// session. ctx bounds only this first connect. If the server refuses, Dial
// returns the refusal as a *Disconnect (Cause CauseRejected, with the
// server's code, reason and advice); it does not retry a first connect.
// Afterwards the client reconnects by itself until Close, or until the
// server says not to come back.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Client{
		cfg: cfg, backoff: cfg.backoff.withDefaults(), conn: cfg.conn,
		done: make(chan struct{}), notes: make(chan Notification, cfg.buffer), discs: make(chan Disconnect, 32),
	}
	if c.conn == nil {
		creds := insecure.NewCredentials()
		if cfg.tls != nil {
			creds = credentials.NewTLS(cfg.tls)
		}
		conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, cfg.dialOpts...)...)
		if err != nil {
			return nil, fmt.Errorf("client: dial %s: %w", addr, err)
		}
		c.conn, c.ownConn = conn, true
	}
	c.hub = hubpb.NewHubClient(c.conn)
	if r := cfg.resume; r != nil {
		c.resume = r
		c.lastAcked, c.lastDelivered = r.LastAckedSeq, r.LastAckedSeq
	}
	base, baseCancel := context.WithCancel(context.Background())
	closing, closeCancel := context.WithCancel(context.Background())
	c.baseCancel, c.closeCancel = baseCancel, closeCancel

	ls, d := c.connect(base, ctx)
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
		closeCancel()
		if c.ownConn {
			c.conn.Close()
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("client: connect: %w", ctx.Err())
		}
		return nil, d
	}
	go c.run(base, closing, ls)
	return c, nil
}

// Notifications returns the channel notifications arrive on, in seq order
// and without duplicates; it is closed when the client ends. Read it
// promptly: while the channel is full the client stops reading the stream,
// and the server ends a session that falls too far behind (the client then
// resumes and gets the rest redelivered). Nothing arrives on it when
// OnNotification is set.
func (c *Client) Notifications() <-chan Notification { return c.notes }

// Disconnects returns a channel that receives every Disconnect (the same
// ones OnDisconnect gets), the last one with WillReconnect false; it is
// closed when the client ends. It holds the 32 latest: when the
// application does not read it, older ones are dropped rather than holding
// up reconnection.
func (c *Client) Disconnects() <-chan Disconnect { return c.discs }

// Done is closed when the client has ended: after Close, or after a
// disconnect it will not come back from.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns, once Done is closed, why the client ended: nil after Close,
// else the *Disconnect it did not reconnect from (its Cause tells kicked,
// banned, superseded, rejected and lost apart). Before that it returns nil.
func (c *Client) Err() error {
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
	r := Resume{SessionID: c.sess.ID, Secret: c.sess.ResumeSecret, LastAckedSeq: max(c.lastAcked, c.ackFloor)}
	return r
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{Connects: int(c.connects.Load()), Resumes: int(c.resumes.Load()),
		Delivered: c.delivered.Load(), Redelivered: c.redelivered.Load(), Duplicates: c.duplicates.Load()}
}

// Ack acknowledges every notification up to seq. The highest acknowledged
// seq is what a resume asks redelivery after, so acknowledge a
// notification once it is processed. It is sent on the current stream if
// there is one; while disconnected it is only remembered for the resume,
// so Ack fails only if sending on a live stream failed for another reason
// than the stream ending.
func (c *Client) Ack(seq uint64) error {
	c.mu.Lock()
	if seq > c.lastAcked {
		c.lastAcked = seq
	}
	ls := c.live
	c.mu.Unlock()
	if ls == nil {
		return nil
	}
	err := ls.send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Ack{Ack: &hubpb.Ack{Seq: seq}}})
	if err != nil && !errors.Is(err, io.EOF) && ls.st.Context().Err() == nil {
		return fmt.Errorf("client: ack %d: %w", seq, err)
	}
	return nil
}

// Close ends the client: it sends Goodbye (the server records the end as
// client_closed), waits for the server to end the stream (at most the
// close timeout, then cuts it), stops any reconnect wait, and closes the
// channels. It is idempotent and safe to call from any goroutine except
// the client's own callbacks. It returns an error only if the stream had
// to be cut.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closedByApp = true
		c.mu.Unlock()
		c.closeCancel()
		t := time.NewTimer(c.cfg.closeTimeout)
		defer t.Stop()
		select {
		case <-c.done:
		case <-t.C:
			c.closeErr = fmt.Errorf("client: the server did not end the session within %s; stream cut", c.cfg.closeTimeout)
			c.baseCancel()
			<-c.done
		}
	})
	<-c.done
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
	stop := context.AfterFunc(bound, cancel)
	defer stop()
	fail := func(err error) (*stream, *Disconnect) {
		cancel()
		return nil, classify(nil, err, false)
	}
	st, err := c.hub.Connect(sctx)
	if err != nil {
		return fail(err)
	}
	hello := &hubpb.Hello{User: c.cfg.user, Device: c.cfg.device, Token: c.cfg.token}
	c.mu.Lock()
	if r := c.resume; r != nil {
		hello.Resume = &hubpb.Resume{SessionId: r.SessionID, Secret: r.Secret, LastAckedSeq: max(c.lastAcked, c.ackFloor)}
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
		c.cfg.onFrame(f)
	}
	w := f.GetWelcome()
	if w == nil {
		cancel()
		return nil, &Disconnect{Cause: CauseLost, Reconnect: ReconnectAllowed, Reason: "protocol error: the first server frame is not Welcome"}
	}
	sess := Session{ID: w.GetSessionId(), ResumeSecret: w.GetResumeSecret(), ResumedFrom: w.GetResumedFrom(),
		HeartbeatInterval: time.Duration(w.GetHeartbeatIntervalMs()) * time.Millisecond,
		EventID:           w.GetEventId(), Seq: w.GetSeq(), Redelivering: int(w.GetRedelivering())}
	ls := &stream{st: st, cancel: cancel, session: sess.ID, welcomed: time.Now()}
	c.mu.Lock()
	c.sess = sess
	c.resume = &Resume{SessionID: sess.ID, Secret: sess.ResumeSecret}
	if sess.ResumedFrom == "" {
		// A fresh session gets the notifications recorded after its
		// connect; earlier ones were never addressed to it.
		c.ackFloor = max(c.ackFloor, sess.Seq)
		c.lastDelivered = max(c.lastDelivered, sess.Seq)
	}
	c.live = ls
	c.mu.Unlock()
	c.connects.Add(1)
	if sess.ResumedFrom != "" {
		c.resumes.Add(1)
	}
	c.cfg.logger.Info("hub session started", "session", sess.ID, "resumed_from", sess.ResumedFrom, "redelivering", sess.Redelivering)
	if c.cfg.onConnect != nil {
		c.cfg.onConnect(sess)
	}
	return ls, nil
}

// run owns the client from the first welcome to the end: it serves each
// stream, and between streams decides, reports and waits.
//
// Two counts drive the decision. failed counts the connect attempts that
// failed in a row (Disconnect.Attempt, WithMaxAttempts); it restarts at
// every Welcome. step, the backoff exponent, counts every attempt since a
// session last lasted Backoff.Max: a session the server accepts and ends
// at once (repeated kicks, a slow consumer that cannot keep up) is no
// better than a failed attempt, and restarting the backoff at each
// Welcome would bring such a client back every Base forever.
func (c *Client) run(base, closing context.Context, ls *stream) {
	defer c.finish()
	step := 0
	for {
		d := c.serve(closing, ls)
		if time.Since(ls.welcomed) >= c.backoff.Max {
			step = 0
		}
		for failed := 0; ; {
			if closing.Err() != nil && d.Cause == CauseLost {
				d = &Disconnect{Cause: CauseClosed, Reason: "closed by the client", Session: d.Session, Code: d.Code}
			}
			c.plan(d, closing, step, failed)
			c.report(*d)
			if !d.WillReconnect {
				c.stop(d)
				return
			}
			if d.RejectCode == "resume_refused" && d.Reconnect == ReconnectAllowed {
				c.dropResume() // the session cannot be resumed: connect afresh
			}
			if err := c.cfg.sleep(closing, d.Delay); err != nil || closing.Err() != nil {
				c.report(Disconnect{Cause: CauseClosed, Reason: "closed by the client while waiting to reconnect", Attempt: failed})
				return
			}
			step++
			if ls, d = c.connect(base, closing); d == nil {
				break
			}
			failed++
		}
	}
}

// plan decides whether and when to reconnect after d: failed is the
// number of failed attempts in a row (d's included), step the backoff
// exponent (see run).
func (c *Client) plan(d *Disconnect, closing context.Context, step, failed int) {
	d.Attempt = failed
	d.WillReconnect, d.Delay = false, 0
	switch {
	case closing.Err() != nil, !c.cfg.reconnect:
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

// report hands d to the application: the callback, then the channel
// (dropping the oldest entry when it is full).
func (c *Client) report(d Disconnect) {
	c.cfg.logger.Info("hub session ended", "cause", d.Cause.String(), "reason", d.Reason, "reconnect", d.Reconnect.String(),
		"event_id", d.EventID, "will_reconnect", d.WillReconnect, "delay", d.Delay, "attempt", d.Attempt)
	if c.cfg.onDisconnect != nil {
		c.cfg.onDisconnect(d)
	}
	select {
	case c.discs <- d:
	default:
		select {
		case <-c.discs:
		default:
		}
		c.discs <- d // run is the only sender, so there is room now
	}
}

func (c *Client) stop(d *Disconnect) {
	c.mu.Lock()
	if !c.closedByApp && d.Cause != CauseClosed {
		c.err = d
	}
	c.mu.Unlock()
}

func (c *Client) finish() {
	c.baseCancel()
	c.closeCancel()
	if c.ownConn {
		c.conn.Close()
	}
	c.mu.Lock()
	c.live = nil
	c.mu.Unlock()
	close(c.notes)
	close(c.discs)
	close(c.done)
}

// serve runs one welcomed stream until it ends. A goroutine reads the
// stream and answers pings at once (so a slow application does not look
// dead); serve hands notifications over, remembers a Disconnect frame, and
// says Goodbye when the client is closing.
func (c *Client) serve(closing context.Context, ls *stream) *Disconnect {
	frames := make(chan *hubpb.ServerFrame, 16)
	ended := make(chan error, 1)
	go c.recv(ls, frames, ended)
	defer func() {
		c.mu.Lock()
		if c.live == ls {
			c.live = nil
		}
		c.mu.Unlock()
		ls.cancel()
	}()
	var frame *hubpb.Disconnect
	handle := func(f *hubpb.ServerFrame) {
		switch x := f.GetFrame().(type) {
		case *hubpb.ServerFrame_Notification:
			c.deliver(closing, x.Notification)
		case *hubpb.ServerFrame_Disconnect:
			frame = x.Disconnect
		}
	}
	goodbye := false
	closeCh := closing.Done()
	for {
		select {
		case f := <-frames:
			handle(f)
		case err := <-ended:
			// recv queued every frame before it reported the end.
			for len(frames) > 0 {
				handle(<-frames)
			}
			d := classify(frame, err, goodbye)
			d.Session = ls.session
			return d
		case <-closeCh:
			closeCh = nil
			goodbye = true
			if err := ls.send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Goodbye{Goodbye: &hubpb.Goodbye{Reason: "client closed"}}}); err != nil {
				ls.cancel()
			}
		}
	}
}

// recv reads ls until it ends, answering pings.
func (c *Client) recv(ls *stream, frames chan<- *hubpb.ServerFrame, ended chan<- error) {
	ctx := ls.st.Context()
	for {
		f, err := ls.st.Recv()
		if err != nil {
			ended <- err
			return
		}
		if c.cfg.onFrame != nil {
			c.cfg.onFrame(f)
		}
		if p := f.GetPing(); p != nil {
			_ = ls.send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Pong{Pong: &hubpb.Pong{Nonce: p.GetNonce()}}})
			continue
		}
		select {
		case frames <- f:
		case <-ctx.Done():
			ended <- ctx.Err()
			return
		}
	}
}

// deliver hands n to the application unless it was delivered already (a
// redelivery overlapping what this process saw before the disconnect).
func (c *Client) deliver(closing context.Context, n *hubpb.Notification) {
	if n.GetSeq() <= c.lastDelivered {
		c.duplicates.Add(1)
		return
	}
	c.lastDelivered = n.GetSeq()
	note := Notification{Seq: n.GetSeq(), Topic: n.GetTopic(), Payload: n.GetPayload(), EventID: n.GetEventId(),
		Time: time.Unix(0, n.GetTimeUnixNano()), Redelivered: n.GetRedelivered()}
	if c.cfg.onNotification != nil {
		c.cfg.onNotification(note)
	} else {
		select {
		case c.notes <- note:
		case <-closing.Done():
			return
		}
	}
	c.delivered.Add(1)
	if note.Redelivered {
		c.redelivered.Add(1)
	}
	if c.cfg.autoAck {
		_ = c.Ack(note.Seq)
	}
}
