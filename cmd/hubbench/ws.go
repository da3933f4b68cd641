package main

// --transport ws: each session is one WebSocket connection to hubd's
// /connect (subprotocol sessionledger.v1+proto), held by the small client
// below, which does what hub/client does for gRPC and what the benchmark
// needs: Hello, auto-ack, pongs, resume as advised after an end, Goodbye.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// sessClient is what a benchmark session holds: a hub/client.Client over
// gRPC, or a wsClient.
type sessClient interface {
	Close() error
	Stats() client.Stats
}

var (
	_ sessClient = (*client.Client)(nil)
	_ sessClient = (*wsClient)(nil)
)

// wsClient is one session over WebSocket that resumes after each end the
// server allows, as the application of hub/client would.
type wsClient struct {
	s   *sess
	url string

	wmu sync.Mutex // one writer at a time: acks and pongs, Goodbye

	mu        sync.Mutex
	conn      *websocket.Conn
	closing   bool
	sessionID string
	secret    string
	lastAcked uint64
	ackTimer  bool   // an ack is scheduled (--ws-ack DURATION)
	ackSent   uint64 // the highest ack sent with a Pong (--ws-ack pong)
	stats     client.Stats
	done      chan struct{} // closed when run returns
}

var wsDialer = websocket.Dialer{Subprotocols: []string{"sessionledger.v1+proto"}, HandshakeTimeout: 30 * time.Second,
	ReadBufferSize: 1024, WriteBufferSize: 1024}

// dialWS connects the session and returns once it is welcomed; the
// client then runs on its own goroutine until Close or an end it must not
// come back from.
func dialWS(ctx context.Context, s *sess, url string) (*wsClient, error) {
	c := &wsClient{s: s, url: url, done: make(chan struct{})}
	w, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	go c.run(w)
	return c, nil
}

// connect opens a connection, says Hello (resuming the last session, if
// any) and waits for the Welcome.
func (c *wsClient) connect(ctx context.Context) (*hubpb.Welcome, error) {
	conn, _, err := wsDialer.DialContext(ctx, c.url, nil)
	if err != nil {
		return nil, err
	}
	hello := &hubpb.Hello{User: c.s.user, Device: "bench"}
	c.mu.Lock()
	if c.sessionID != "" {
		hello.Resume = &hubpb.Resume{SessionId: c.sessionID, Secret: c.secret, LastAckedSeq: c.lastAcked}
	}
	c.mu.Unlock()
	if err := writeFrame(conn, &hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: hello}}); err != nil {
		conn.Close()
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(d)
	}
	f, err := readFrame(conn)
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return nil, err
	}
	w := f.GetWelcome()
	if w == nil {
		conn.Close()
		if r := f.GetRejected(); r != nil {
			return nil, fmt.Errorf("rejected: %s: %s", r.GetCode(), r.GetReason())
		}
		return nil, fmt.Errorf("first frame is not a Welcome: %v", f)
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		conn.Close()
		return nil, errors.New("closed")
	}
	c.conn = conn
	if c.sessionID == "" || w.GetResumedFrom() == "" {
		c.lastAcked = max(c.lastAcked, w.GetSeq())
	}
	c.sessionID, c.secret = w.GetSessionId(), w.GetResumeSecret()
	c.stats.Connects++
	if w.GetResumedFrom() != "" {
		c.stats.Resumes++
	}
	c.mu.Unlock()
	c.s.connected(client.Session{ID: w.GetSessionId(), ResumedFrom: w.GetResumedFrom(), Seq: w.GetSeq()})
	return w, nil
}

// run reads the welcomed connection, and after each end reconnects as
// advised, until Close or an end without reconnect.
func (c *wsClient) run(_ *hubpb.Welcome) {
	defer close(c.done)
	attempt := 0
	for {
		c.mu.Lock()
		conn, id := c.conn, c.sessionID
		c.mu.Unlock()
		d := c.read(conn)
		d.Session = id
		conn.Close()
		c.mu.Lock()
		closing := c.closing
		c.conn = nil
		c.mu.Unlock()
		if closing {
			d.Cause, d.WillReconnect = client.CauseClosed, false
			c.s.disconnected(d)
			return
		}
		for {
			d.WillReconnect = d.Cause != client.CauseSuperseded && d.Reconnect != client.ReconnectNotAllowed
			d.Delay = backoff(attempt, d.ReconnectAfter)
			c.s.disconnected(d)
			if !d.WillReconnect {
				return
			}
			time.Sleep(d.Delay)
			c.mu.Lock()
			closing := c.closing
			c.mu.Unlock()
			if closing {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := c.connect(ctx)
			cancel()
			if err == nil {
				attempt = 0
				break
			}
			attempt++
			d = client.Disconnect{Cause: client.CauseLost, Reason: err.Error(), Attempt: attempt}
		}
	}
}

// read handles frames until the connection ends and says how it ended.
func (c *wsClient) read(conn *websocket.Conn) client.Disconnect {
	var end client.Disconnect
	end.Cause, end.Reason = client.CauseLost, "connection closed without a Disconnect"
	for {
		f, err := readFrame(conn)
		if err != nil {
			return end
		}
		switch x := f.GetFrame().(type) {
		case *hubpb.ServerFrame_Notification:
			c.s.b.delivered.Add(1)
			c.mu.Lock()
			c.stats.Delivered++
			if x.Notification.GetRedelivered() {
				c.stats.Redelivered++
			}
			if seq := x.Notification.GetSeq(); seq > c.lastAcked {
				c.lastAcked = seq
			}
			// Acks are cumulative (--ws-ack): with the next Pong, one per
			// notification, or one that long after the first unacked.
			every := c.s.b.o.wsAckEvery
			if every > 0 && !c.ackTimer {
				c.ackTimer = true
				time.AfterFunc(every, func() { c.ackLater(conn) })
			}
			c.mu.Unlock()
			if every == 0 {
				_ = c.write(conn, &hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Ack{Ack: &hubpb.Ack{Seq: x.Notification.GetSeq()}}})
			}
		case *hubpb.ServerFrame_Ping:
			if c.s.b.o.wsAckEvery < 0 {
				c.mu.Lock()
				seq, send := c.lastAcked, c.lastAcked > c.ackSent
				c.ackSent = seq
				c.mu.Unlock()
				if send {
					_ = c.write(conn, &hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Ack{Ack: &hubpb.Ack{Seq: seq}}})
				}
			}
			_ = c.write(conn, &hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Pong{Pong: &hubpb.Pong{Nonce: x.Ping.GetNonce()}}})
		case *hubpb.ServerFrame_Disconnect:
			c.s.frame(f)
			d := x.Disconnect
			end = client.Disconnect{Cause: wsCause(d.GetCode()), Reason: d.GetReason(), EventID: d.GetEventId(), Actor: d.GetActor(),
				SupersededBy: d.GetSupersededBy(), ReconnectAfter: time.Duration(d.GetReconnectAfterMs()) * time.Millisecond, FromFrame: true}
			switch d.GetReconnect() {
			case hubpb.Reconnect_RECONNECT_NOT_ALLOWED:
				end.Reconnect = client.ReconnectNotAllowed
			case hubpb.Reconnect_RECONNECT_AFTER:
				end.Reconnect = client.ReconnectAfter
			default:
				end.Reconnect = client.ReconnectAllowed
			}
		}
	}
}

// ackLater sends the highest seq received, for --ws-ack-every.
func (c *wsClient) ackLater(conn *websocket.Conn) {
	c.mu.Lock()
	c.ackTimer = false
	seq := c.lastAcked
	c.mu.Unlock()
	_ = c.write(conn, &hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Ack{Ack: &hubpb.Ack{Seq: seq}}})
}

func wsCause(code hubpb.DisconnectCode) client.Cause {
	switch code {
	case hubpb.DisconnectCode_DISCONNECT_CODE_KICKED:
		return client.CauseKicked
	case hubpb.DisconnectCode_DISCONNECT_CODE_BANNED:
		return client.CauseBanned
	case hubpb.DisconnectCode_DISCONNECT_CODE_SUPERSEDED:
		return client.CauseSuperseded
	case hubpb.DisconnectCode_DISCONNECT_CODE_IDLE_TIMEOUT:
		return client.CauseIdleTimeout
	case hubpb.DisconnectCode_DISCONNECT_CODE_SERVER_SHUTDOWN:
		return client.CauseServerShutdown
	case hubpb.DisconnectCode_DISCONNECT_CODE_SLOW_CONSUMER:
		return client.CauseSlowConsumer
	}
	return client.CauseUnknown
}

// backoff is hub/client's default policy: 250 ms doubling to 30 s, half
// of it random; never less than the server's advice, plus up to a fifth.
func backoff(attempt int, advice time.Duration) time.Duration {
	b := min(30*time.Second, 250*time.Millisecond<<min(attempt, 7))
	b = b/2 + rand.N(b/2+1)
	if advice > 0 {
		m := max(advice, b)
		return m + rand.N(m/5+1)
	}
	return b
}

// Close says Goodbye and waits (at most 5 s) for the server to end the
// session, which it records as client_closed.
func (c *wsClient) Close() error {
	c.mu.Lock()
	c.closing = true
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		_ = c.write(conn, &hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Goodbye{Goodbye: &hubpb.Goodbye{Reason: "hubbench done"}}})
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	}
	select {
	case <-c.done:
	case <-time.After(6 * time.Second):
		if conn != nil {
			conn.Close()
		}
		<-c.done
	}
	return nil
}

// Stats are the client's counters.
func (c *wsClient) Stats() client.Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

func (c *wsClient) write(conn *websocket.Conn, f *hubpb.ClientFrame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return writeFrame(conn, f)
}

func writeFrame(conn *websocket.Conn, f *hubpb.ClientFrame) error {
	b, err := proto.Marshal(f)
	if err != nil {
		return err
	}
	return conn.WriteMessage(websocket.BinaryMessage, b)
}

func readFrame(conn *websocket.Conn) (*hubpb.ServerFrame, error) {
	mt, b, err := conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	if mt != websocket.BinaryMessage {
		return nil, errors.New("text message under the protobuf subprotocol")
	}
	f := &hubpb.ServerFrame{}
	return f, proto.Unmarshal(b, f)
}
