package client

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// backlogLimit bounds what the client holds from one stream for the
// application: notifications read but not yet taken (and, with OnFrame,
// frames OnFrame has not seen yet). Beyond it the application is not
// keeping up, and the client ends the session itself as a slow consumer.
//
// It is kept well below the server's default redelivery limit (1000,
// hub.Config.RedeliveryLimit), because what the client drops is only
// worth dropping if the resume can bring it back: the resume redelivers
// at most that many notifications after the last acknowledged seq, and
// besides this backlog they have to cover what the application took but
// has not acknowledged yet (up to the channel's 64 by default), what was
// in flight from the server when the client cut the stream, and what is
// recorded while it waits to reconnect. Half the limit leaves the other
// half for those. (4096, the figure before, was four times what a resume
// can redeliver: a client that overflowed lost most of it.)
const backlogLimit = 512

// silenceHeartbeats is how many heartbeat intervals may pass without a
// frame from the server before the client presumes the connection dead.
const silenceHeartbeats = 3

// stream is one welcomed Hub.Connect stream and the two goroutines that
// serve it: the reader (read) never waits on the application: it queues
// notifications and frames for the dispatcher and hands pings to the
// writer, so pings are answered and the end of the stream is seen however
// far behind the application is; the writer (write) sends pongs, acks and
// Goodbye, so neither the reader nor Ack waits on HTTP/2 flow control.
// The client's run goroutine (serve) waits for the end and decides what
// it means.
type stream struct {
	st       hubpb.Hub_ConnectClient
	ctx      context.Context // the stream's; done when it is cancelled
	cancel   context.CancelFunc
	session  string
	hb       time.Duration // the server's heartbeat interval (0: unknown)
	welcomed time.Time

	// The reader's findings, for serve: the reader sets frame, err and
	// overflow before it closes ended, and serve reads them after.
	frame    *hubpb.Disconnect // the Disconnect frame, if one came
	err      error             // why Recv failed
	overflow bool              // the backlog was full: the client cut the stream
	ended    chan struct{}     // closed once Recv failed
	lastRecv atomic.Int64      // unix nanoseconds of the latest frame
	silent   atomic.Bool       // the watchdog cut the stream

	// waiting counts the events of this stream queued for the dispatcher
	// and not yet handled (guarded by the queue's mutex).
	waiting int
	// dropping is the dispatcher's: it dropped a notification of this
	// stream, so it drops the rest of them too (handing over a later one
	// would leave a gap that the resume's redelivery could not fill, since
	// the client drops what is not above the last seq delivered).
	dropping bool

	// For the writer.
	wake      chan struct{} // holds a token when there is something to send
	pongDue   atomic.Bool
	pongNonce atomic.Int64
	goodbye   atomic.Bool
	sentAck   uint64 // the writer's; what the server has been told

	watchMu sync.Mutex
	watch   *time.Timer

	// Token refresh (refresh.go): the expiry the server announced and when
	// the client learned of it, the timer that asks the token source, and
	// the fresh token for the writer to send.
	refreshMu    sync.Mutex
	tokenExp     time.Time
	tokenKnown   time.Time
	refreshTimer *time.Timer
	refreshTok   atomic.Pointer[string]

	readerDone, writerDone chan struct{}
}

func newStream(st hubpb.Hub_ConnectClient, ctx context.Context, cancel context.CancelFunc) *stream {
	return &stream{st: st, ctx: ctx, cancel: cancel,
		ended: make(chan struct{}), wake: make(chan struct{}, 1),
		readerDone: make(chan struct{}), writerDone: make(chan struct{})}
}

// poke wakes the writer.
func (ls *stream) poke() {
	select {
	case ls.wake <- struct{}{}:
	default:
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
// Disconnect frame is kept, notifications (and, with OnFrame, every frame)
// are queued for the dispatcher. It never waits on the application.
func (c *Client) read(ls *stream) {
	defer close(ls.readerDone)
	for {
		f, err := ls.st.Recv()
		if err != nil {
			ls.err = err
			close(ls.ended)
			return
		}
		ls.lastRecv.Store(time.Now().UnixNano())
		switch x := f.GetFrame().(type) {
		case *hubpb.ServerFrame_Ping:
			ls.pongNonce.Store(x.Ping.GetNonce())
			ls.pongDue.Store(true)
			ls.poke()
		case *hubpb.ServerFrame_Disconnect:
			ls.frame = x.Disconnect
		case *hubpb.ServerFrame_Refreshed:
			c.refreshed(ls, x.Refreshed)
		}
		ev := event{kind: evFrame, ls: ls, note: f.GetNotification()}
		if c.cfg.onFrame != nil {
			ev.frame = f
		}
		if ev.frame == nil && ev.note == nil {
			continue
		}
		if !c.q.pushFrom(ev) {
			ls.overflow = true
			ls.cancel() // Recv returns Canceled; serve sees overflow
		}
	}
}

// defaultAckInterval is the least time between two Ack frames on a stream
// by default (WithAckInterval). Acks are cumulative, and what a resume
// carries is the client's own highest ack, so a client notified many times
// a heartbeat sends one Ack frame with its pong, not one per notification
// (on a connection of its own, each one a write, a read and a wake-up on
// both sides). The first ack after a quiet interval goes at once.
const defaultAckInterval = 10 * time.Second

// write sends what the others asked for: the pong to the latest ping, the
// highest acknowledged seq (acks are cumulative, so only the latest
// matters; at most one Ack every ack interval, and one with each pong),
// and Goodbye. It ends after
// Goodbye or when the stream ends.
func (c *Client) write(ls *stream) {
	defer close(ls.writerDone)
	var lastAck time.Time // when the latest Ack was sent
	var held *time.Timer  // wakes the writer for an ack held back
	defer func() {
		if held != nil {
			held.Stop()
		}
	}()
	var heldC <-chan time.Time
	for {
		select {
		case <-ls.wake:
		case <-heldC:
			heldC = nil
		case <-ls.ctx.Done():
			return
		}
		pong := ls.pongDue.Swap(false)
		if pong {
			if ls.st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Pong{Pong: &hubpb.Pong{Nonce: ls.pongNonce.Load()}}}) != nil {
				return // the stream ended: the reader gets its status
			}
		}
		if tok := ls.refreshTok.Swap(nil); tok != nil {
			if ls.st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Refresh{Refresh: &hubpb.Refresh{Token: *tok}}}) != nil {
				return
			}
		}
		c.mu.Lock()
		ack := c.lastAcked
		c.mu.Unlock()
		goodbye := ls.goodbye.Load()
		if ack > ls.sentAck {
			if wait := c.cfg.ackInterval - time.Since(lastAck); pong || goodbye || wait <= 0 {
				if ls.st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Ack{Ack: &hubpb.Ack{Seq: ack}}}) != nil {
					return
				}
				ls.sentAck, lastAck = ack, time.Now()
			} else if heldC == nil {
				if held == nil {
					held = time.NewTimer(wait)
				} else {
					held.Reset(wait)
				}
				heldC = held.C
			}
		}
		if goodbye {
			if ls.st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Goodbye{Goodbye: &hubpb.Goodbye{Reason: "client closed"}}}) != nil {
				ls.cancel()
			}
			return
		}
	}
}

// serve runs one welcomed stream until it ends and says how it ended;
// silent reports that the watchdog cut it. It never waits on the
// application: the reader queues what came for the dispatcher, which
// hands it over and, once the stream has ended, drops what the
// application has not taken (unacknowledged, so a resume has it
// redelivered) instead of reporting the end behind it.
func (c *Client) serve(ls *stream) (d *Disconnect, silent bool) {
	go c.read(ls)
	go c.write(ls)
	var silence time.Duration
	if ls.hb > 0 {
		silence = silenceHeartbeats * ls.hb
		ls.startWatchdog(silence)
	}
	c.scheduleRefresh(ls, false)
	defer func() {
		c.mu.Lock()
		if c.live == ls {
			c.live = nil
		}
		c.mu.Unlock()
		ls.cancel()
		ls.stopWatchdog()
		ls.stopRefresh()
		<-ls.readerDone
		<-ls.writerDone
	}()
	goodbye := false
	closeCh := c.closing.Done()
	var cut <-chan time.Time
	for {
		select {
		case <-ls.ended:
			d := classify(ls.frame, ls.err, goodbye)
			switch {
			case ls.frame != nil:
			case ls.overflow:
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

func toNote(n *hubpb.Notification) Notification {
	return Notification{Seq: n.GetSeq(), Topic: n.GetTopic(), Payload: n.GetPayload(), EventID: n.GetEventId(),
		Time: time.Unix(0, n.GetTimeUnixNano()), Redelivered: n.GetRedelivered()}
}
