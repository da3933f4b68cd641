package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// sess is one benchmark session, held through the hub/client package as an
// application would hold it: notifications acknowledged as they arrive,
// every disconnect answered as the server advises (a kick that allows it
// and a shutdown are resumed, with the client's jittered backoff). The
// callbacks only record times and counts.
type sess struct {
	b     *bench
	user  string
	conn  *grpc.ClientConn // shared with the other sessions of its group (single mode, gRPC)
	addrs string           // the nodes it dials, its first node first (cluster mode)
	c     sessClient

	mu      sync.Mutex
	id      string
	addr    string        // the node holding the current session (cluster mode)
	ended   chan struct{} // closed when the current session ends
	endedAt time.Time
	frameAt time.Time // when the latest Disconnect frame arrived
}

// dial connects the session; ctx bounds the first connect.
func (s *sess) dial(ctx context.Context) error {
	if s.b.wsListen != "" {
		c, err := dialWS(ctx, s, "ws://"+s.b.wsListen+"/connect")
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.c = c
		s.mu.Unlock()
		return nil
	}
	opts := []client.Option{client.WithUser(s.user, "bench"), client.WithAutoAck(),
		client.OnNotification(func(client.Notification) { s.b.delivered.Add(1) }),
		client.OnConnect(s.connected), client.OnDisconnect(s.disconnected), client.OnFrame(s.frame)}
	if s.conn != nil {
		opts = append(opts, client.WithConn(s.conn))
	}
	c, err := client.Dial(ctx, s.addrs, opts...)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.c = c
	s.mu.Unlock()
	return nil
}

func (s *sess) client() sessClient {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

func (s *sess) connected(cs client.Session) {
	s.mu.Lock()
	s.id, s.addr, s.ended = cs.ID, cs.Addr, make(chan struct{})
	s.mu.Unlock()
	s.b.live.Add(1)
	if cs.ResumedFrom != "" && s.b.storm.on.Load() {
		s.b.storm.resumed(time.Now())
	}
	if s.b.kill.on.Load() {
		s.b.kill.connected(s, cs, time.Now())
	}
}

// node returns the address of the node holding the latest session.
func (s *sess) node() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// disconnected sees every end of a session and every failed attempt.
func (s *sess) disconnected(d client.Disconnect) {
	if d.Session == "" { // a connect attempt that failed
		s.b.failedAttempts.Add(1)
		if s.b.storm.on.Load() {
			s.b.storm.retries.Add(1)
		}
	} else {
		// live drops before ended closes: whoever waits on ended (a kick)
		// then sees the count without this session.
		s.b.live.Add(-1)
		s.mu.Lock()
		s.endedAt = time.Now()
		if s.ended != nil {
			close(s.ended)
			s.ended = nil
		}
		s.mu.Unlock()
	}
	if d.Cause == client.CauseServerShutdown && s.b.storm.on.Load() {
		s.b.storm.advised(d.ReconnectAfter, d.Delay)
	}
	if !d.WillReconnect && d.Cause != client.CauseClosed {
		s.b.gaveUp.Add(1)
		s.b.gaveUpWhy.CompareAndSwap(nil, d.Error())
	}
}

func (s *sess) frame(f *hubpb.ServerFrame) {
	if f.GetDisconnect() != nil {
		s.mu.Lock()
		s.frameAt = time.Now()
		s.mu.Unlock()
	}
}

// current returns the live session's id and the channel closed when it
// ends ("" and nil while the client is between sessions).
func (s *sess) current() (string, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended == nil {
		return "", nil
	}
	return s.id, s.ended
}

// stormStats records when sessions resumed after a shutdown.
type stormStats struct {
	on      atomic.Bool
	mu      sync.Mutex
	start   time.Time
	times   []time.Duration // resume time minus start
	advice  []time.Duration // the server's "reconnect after"
	waits   []time.Duration // what the client waited, jitter included
	retries atomic.Int64
}

func (st *stormStats) advised(advice, wait time.Duration) {
	st.mu.Lock()
	st.advice = append(st.advice, advice)
	st.waits = append(st.waits, wait)
	st.mu.Unlock()
}

func (st *stormStats) resumed(t time.Time) {
	st.mu.Lock()
	st.times = append(st.times, t.Sub(st.start))
	st.mu.Unlock()
}
