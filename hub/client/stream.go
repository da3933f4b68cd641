package client

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// backlogLimit bounds the notifications the client has read from a stream
// but the application has not taken yet. It is the server's default queue
// per session (1024) plus its default redelivery window (1000), doubled:
// beyond it the application is not keeping up, and the client ends the
// session itself as a slow consumer rather than hold more in memory.
const backlogLimit = 4096

// silenceHeartbeats is how many heartbeat intervals may pass without a
// frame from the server before the client presumes the connection dead.
const silenceHeartbeats = 3

// stream is one welcomed Hub.Connect stream and the three goroutines that
// serve it: the reader (read) never waits on the application, so pings
// are answered and the end of the stream is seen however far behind the
// application is; the writer (write) sends pongs, acks and Goodbye, so
// neither the reader nor Ack waits on HTTP/2 flow control; and the owner
// (serve, on the client's run goroutine) hands notifications to the
// application and decides what the end means.
type stream struct {
	st       hubpb.Hub_ConnectClient
	ctx      context.Context // the stream's; done when it is cancelled
	cancel   context.CancelFunc
	session  string
	hb       time.Duration // the server's heartbeat interval (0: unknown)
	welcomed time.Time

	// The reader's findings, for the owner.
	mu       sync.Mutex
	backlog  []*hubpb.Notification
	frame    *hubpb.Disconnect // the Disconnect frame, if one came
	err      error             // why Recv failed; set before ended closes
	overflow bool              // the backlog was full: the client cut the stream
	ready    chan struct{}     // holds a token while the backlog is not empty
	ended    chan struct{}     // closed once Recv failed
	lastRecv atomic.Int64      // unix nanoseconds of the latest frame
	silent   atomic.Bool       // the watchdog cut the stream

	// For the writer.
	wake      chan struct{} // holds a token when there is something to send
	pongDue   atomic.Bool
	pongNonce atomic.Int64
	goodbye   atomic.Bool
	sentAck   uint64 // the writer's; what the server has been told

	watchMu sync.Mutex
	watch   *time.Timer

	readerDone, writerDone chan struct{}
}

func newStream(st hubpb.Hub_ConnectClient, ctx context.Context, cancel context.CancelFunc) *stream {
	return &stream{st: st, ctx: ctx, cancel: cancel,
		ready: make(chan struct{}, 1), ended: make(chan struct{}), wake: make(chan struct{}, 1),
		readerDone: make(chan struct{}), writerDone: make(chan struct{})}
}

// poke wakes the writer.
func (ls *stream) poke() {
	select {
	case ls.wake <- struct{}{}:
	default:
	}
}

// push queues a notification for the owner; false if the backlog is full.
func (ls *stream) push(n *hubpb.Notification) bool {
	ls.mu.Lock()
	if len(ls.backlog) >= backlogLimit {
		ls.overflow = true
		ls.mu.Unlock()
		return false
	}
	ls.backlog = append(ls.backlog, n)
	ls.mu.Unlock()
	select {
	case ls.ready <- struct{}{}:
	default:
	}
	return true
}

// front returns the oldest queued notification, or nil.
func (ls *stream) front() *hubpb.Notification {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if len(ls.backlog) == 0 {
		return nil
	}
	return ls.backlog[0]
}

// pop removes the oldest queued notification.
func (ls *stream) pop() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.backlog[0] = nil
	ls.backlog = ls.backlog[1:]
	if len(ls.backlog) == 0 {
		ls.backlog = nil // let the array go
	}
}

func (ls *stream) hasEnded() bool {
	select {
	case <-ls.ended:
		return true
	default:
		return false
	}
}

// startWatchdog cuts the stream once nothing arrived for silence: a
// connection that stops carrying frames without breaking (a half-open TCP
// connection, a stalled proxy) would otherwise hold the client forever,
// since the server's pings are what proves it alive.
func (ls *stream) startWatchdog(silence time.Duration) {
	ls.watchMu.Lock()
	defer ls.watchMu.Unlock()
	ls.watch = time.AfterFunc(silence, func() {
		if ls.ctx.Err() != nil {
			return
		}
		idle := time.Since(time.Unix(0, ls.lastRecv.Load()))
		if idle >= silence {
			ls.silent.Store(true)
			ls.cancel()
			return
		}
		ls.watchMu.Lock()
		ls.watch.Reset(silence - idle)
		ls.watchMu.Unlock()
	})
}

func (ls *stream) stopWatchdog() {
	ls.watchMu.Lock()
	defer ls.watchMu.Unlock()
	if ls.watch != nil {
		ls.watch.Stop() // a run under way sees ctx done and does not re-arm
	}
}

// read reads ls until it ends: pings are handed to the writer, the
// Disconnect frame is kept, notifications are queued for the owner. It
// never waits on the application (only on OnFrame).
func (c *Client) read(ls *stream) {
	defer close(ls.readerDone)
	if c.cfg.onFrame != nil {
		defer c.own.enter()()
	}
	for {
		f, err := ls.st.Recv()
		if err != nil {
			ls.mu.Lock()
			ls.err = err
			ls.mu.Unlock()
			close(ls.ended)
			return
		}
		ls.lastRecv.Store(time.Now().UnixNano())
		if c.cfg.onFrame != nil {
			c.cfg.onFrame(f)
		}
		switch x := f.GetFrame().(type) {
		case *hubpb.ServerFrame_Ping:
			ls.pongNonce.Store(x.Ping.GetNonce())
			ls.pongDue.Store(true)
			ls.poke()
		case *hubpb.ServerFrame_Notification:
			if !ls.push(x.Notification) {
				ls.cancel() // Recv returns Canceled; the owner sees overflow
			}
		case *hubpb.ServerFrame_Disconnect:
			ls.mu.Lock()
			ls.frame = x.Disconnect
			ls.mu.Unlock()
		}
	}
}

// write sends what the others asked for: the pong to the latest ping, the
// highest acknowledged seq (acks are cumulative, so only the latest
// matters), and Goodbye. It ends after Goodbye or when the stream ends.
func (c *Client) write(ls *stream) {
	defer close(ls.writerDone)
	for {
		select {
		case <-ls.wake:
		case <-ls.ctx.Done():
			return
		}
		if ls.pongDue.Swap(false) {
			if ls.st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Pong{Pong: &hubpb.Pong{Nonce: ls.pongNonce.Load()}}}) != nil {
				return // the stream ended: the reader gets its status
			}
		}
		c.mu.Lock()
		ack := c.lastAcked
		c.mu.Unlock()
		if ack > ls.sentAck {
			if ls.st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Ack{Ack: &hubpb.Ack{Seq: ack}}}) != nil {
				return
			}
			ls.sentAck = ack
		}
		if ls.goodbye.Load() {
			if ls.st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Goodbye{Goodbye: &hubpb.Goodbye{Reason: "client closed"}}}) != nil {
				ls.cancel()
			}
			return
		}
	}
}

// serve runs one welcomed stream until it ends and says how it ended;
// silent reports that the watchdog cut it. It hands notifications to the
// application one at a time, in order, and stops doing so as soon as the
// stream has ended: what the application has not taken by then is dropped
// (not acknowledged, so a resume has it redelivered) and the end is
// reported at once instead of behind the backlog.
func (c *Client) serve(closing context.Context, ls *stream) (d *Disconnect, silent bool) {
	go c.read(ls)
	go c.write(ls)
	var silence time.Duration
	if ls.hb > 0 {
		silence = silenceHeartbeats * ls.hb
		ls.startWatchdog(silence)
	}
	defer func() {
		c.mu.Lock()
		if c.live == ls {
			c.live = nil
		}
		c.mu.Unlock()
		ls.cancel()
		ls.stopWatchdog()
		<-ls.readerDone
		<-ls.writerDone
	}()
	goodbye := false
	closeCh := closing.Done()
	var cut <-chan time.Time
	for {
		// A callback takes notifications between events, as long as the
		// stream lives and the client is not closing.
		if c.cfg.onNotification != nil && !goodbye && closing.Err() == nil && !ls.hasEnded() {
			if n := c.next(ls); n != nil {
				note := toNote(n)
				c.cfg.onNotification(note)
				ls.pop()
				c.handedOver(note)
				continue
			}
		}
		var out chan<- Notification
		var head Notification
		if c.cfg.onNotification == nil && !goodbye {
			if n := c.next(ls); n != nil {
				out, head = c.notes, toNote(n)
			}
		}
		select {
		case out <- head:
			ls.pop()
			c.handedOver(head)
		case <-ls.ready:
		case <-ls.ended:
			c.handOverWithoutWaiting(ls)
			ls.mu.Lock()
			frame, err, overflow := ls.frame, ls.err, ls.overflow
			ls.mu.Unlock()
			d := classify(frame, err, goodbye)
			switch {
			case frame != nil:
			case overflow:
				d = &Disconnect{Cause: CauseSlowConsumer, Reconnect: ReconnectAllowed, Code: d.Code,
					Reason: fmt.Sprintf("the application did not take notifications fast enough (%d waiting in the client)", backlogLimit)}
			case ls.silent.Load() && !goodbye:
				d.Cause, d.Reconnect = CauseLost, ReconnectAllowed
				d.Reason = fmt.Sprintf("nothing from the server for %s (%d heartbeats): connection presumed dead", silence, silenceHeartbeats)
			}
			d.Session = ls.session
			return d, ls.silent.Load()
		case <-closeCh:
			closeCh, goodbye = nil, true
			ls.goodbye.Store(true)
			ls.poke()
			t := time.NewTimer(c.cfg.closeTimeout)
			defer t.Stop()
			cut = t.C
		case <-cut:
			cut = nil
			c.closeErr = fmt.Errorf("client: the server did not end the session within %s; stream cut", c.cfg.closeTimeout)
			ls.cancel()
		}
	}
}

// next returns the oldest queued notification that was not delivered
// already, dropping duplicates (a redelivery overlapping what this
// process saw before a disconnect), or nil.
func (c *Client) next(ls *stream) *hubpb.Notification {
	for {
		n := ls.front()
		if n == nil || n.GetSeq() > c.lastDelivered {
			return n
		}
		c.duplicates.Add(1)
		ls.pop()
	}
}

// handOverWithoutWaiting puts what is queued into the Notifications
// channel while it has room, after the stream ended; the rest is dropped.
func (c *Client) handOverWithoutWaiting(ls *stream) {
	if c.cfg.onNotification != nil {
		return
	}
	for n := c.next(ls); n != nil; n = c.next(ls) {
		note := toNote(n)
		select {
		case c.notes <- note:
			ls.pop()
			c.handedOver(note)
		default:
			return
		}
	}
}

func toNote(n *hubpb.Notification) Notification {
	return Notification{Seq: n.GetSeq(), Topic: n.GetTopic(), Payload: n.GetPayload(), EventID: n.GetEventId(),
		Time: time.Unix(0, n.GetTimeUnixNano()), Redelivered: n.GetRedelivered()}
}

// handedOver accounts for a notification the application took.
func (c *Client) handedOver(n Notification) {
	c.lastDelivered = n.Seq
	c.delivered.Add(1)
	if n.Redelivered {
		c.redelivered.Add(1)
	}
	if c.cfg.autoAck {
		c.Ack(n.Seq)
	}
}
