package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// sess is one benchmark client session: a Hub.Connect stream that answers
// pings, acks notifications, and on a server_shutdown Disconnect waits the
// advised delay and resumes (retrying with jittered backoff while the
// server is down).
type sess struct {
	b    *bench
	user string
	conn *grpc.ClientConn

	mu      sync.Mutex
	id      string
	secret  string
	lastSeq uint64
	ended   chan struct{} // closed when the current stream ends
	endedAt time.Time
	frameAt time.Time // when the Disconnect frame arrived
	advice  *hubpb.Disconnect
}

// connect opens a stream with Hello (and Resume when resuming) and waits
// for Welcome.
func (s *sess) connect(ctx context.Context, resume bool) (hubpb.Hub_ConnectClient, error) {
	st, err := hubpb.NewHubClient(s.conn).Connect(ctx)
	if err != nil {
		return nil, err
	}
	h := &hubpb.Hello{User: s.user, Device: "bench"}
	s.mu.Lock()
	if resume {
		h.Resume = &hubpb.Resume{SessionId: s.id, Secret: s.secret, LastAckedSeq: s.lastSeq}
	}
	s.mu.Unlock()
	if err := st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: h}}); err != nil {
		return nil, err
	}
	f, err := st.Recv()
	if err != nil {
		return nil, err
	}
	w := f.GetWelcome()
	if w == nil {
		return nil, errors.New("first frame is not Welcome")
	}
	s.mu.Lock()
	s.id, s.secret = w.GetSessionId(), w.GetResumeSecret()
	s.ended = make(chan struct{})
	s.advice = nil
	s.mu.Unlock()
	return st, nil
}

// serve reads the stream until it ends, then records why.
func (s *sess) serve(st hubpb.Hub_ConnectClient) {
	for {
		f, err := st.Recv()
		if err != nil {
			break
		}
		switch fr := f.Frame.(type) {
		case *hubpb.ServerFrame_Ping:
			_ = st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Pong{Pong: &hubpb.Pong{Nonce: fr.Ping.GetNonce()}}})
		case *hubpb.ServerFrame_Notification:
			seq := fr.Notification.GetSeq()
			s.mu.Lock()
			dup := seq <= s.lastSeq
			if !dup {
				s.lastSeq = seq
			}
			s.mu.Unlock()
			if dup {
				s.b.duplicates.Add(1)
				continue
			}
			s.b.delivered.Add(1)
			_ = st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Ack{Ack: &hubpb.Ack{Seq: seq}}})
		case *hubpb.ServerFrame_Disconnect:
			s.mu.Lock()
			s.advice, s.frameAt = fr.Disconnect, time.Now()
			s.mu.Unlock()
		}
	}
	// live drops before ended closes: whoever waits on ended (a kick) then
	// sees the count without this session.
	s.b.live.Add(-1)
	s.mu.Lock()
	s.endedAt = time.Now()
	close(s.ended)
	s.mu.Unlock()
}

// run holds the session: after a server_shutdown it resumes; after any
// other end it stops.
func (s *sess) run(ctx context.Context, st hubpb.Hub_ConnectClient) {
	for {
		s.serve(st)
		s.mu.Lock()
		adv := s.advice
		s.mu.Unlock()
		if ctx.Err() != nil || adv.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_SERVER_SHUTDOWN {
			return
		}
		wait := time.Duration(adv.GetReconnectAfterMs()) * time.Millisecond
		s.b.storm.advised(wait)
		if !sleep(ctx, wait) {
			return
		}
		var err error
		backoff := 100 * time.Millisecond
		for attempt := 0; ; attempt++ {
			st, err = s.connect(ctx, true)
			if err == nil {
				break
			}
			s.b.storm.retries.Add(1)
			// Full jitter: a random delay up to the (growing) backoff.
			if !sleep(ctx, time.Duration(rand.Int64N(int64(backoff)))+10*time.Millisecond) {
				return
			}
			backoff = min(2*backoff, 3*time.Second)
		}
		s.b.live.Add(1)
		s.b.storm.resumed(time.Now())
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// stormStats records when sessions resumed after a shutdown.
type stormStats struct {
	mu      sync.Mutex
	start   time.Time
	times   []time.Duration // resume time minus start
	advice  []time.Duration
	retries atomic.Int64
}

func (st *stormStats) advised(d time.Duration) {
	st.mu.Lock()
	st.advice = append(st.advice, d)
	st.mu.Unlock()
}

func (st *stormStats) resumed(t time.Time) {
	st.mu.Lock()
	st.times = append(st.times, t.Sub(st.start))
	st.mu.Unlock()
}
