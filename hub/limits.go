package hub

import (
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// rateLimiter allows each user limit connects per window (fixed windows;
// entries of past windows are dropped as they are met, so memory follows
// the users active in the current window).
type rateLimiter struct {
	mu     sync.Mutex
	limit  int
	window time.Duration
	start  time.Time
	counts map[string]int
}

func newRateLimiter(limit int, window time.Duration) *rateLimiter {
	return &rateLimiter{limit: limit, window: window, counts: make(map[string]int)}
}

func (r *rateLimiter) allow(user string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.start) >= r.window {
		r.start = now
		clear(r.counts)
	}
	r.counts[user]++
	return r.counts[user] <= r.limit
}

// maxRejectKeys bounds the aggregation table; beyond it, refusals are
// counted under one overflow key per code.
const maxRejectKeys = 10_000

type rejectKey struct{ user, device, code string }

type rejectAgg struct {
	count  uint32
	reason string
	remote string
}

// rejects records refused connects: the first refusal of a key in a window
// at once, the rest of the window as one connect_rejected with a count.
type rejects struct {
	s       *Server
	mu      sync.Mutex
	pending map[rejectKey]*rejectAgg
	seen    map[rejectKey]bool // keys recorded in the current window
}

func newRejects(s *Server) *rejects {
	return &rejects{s: s, pending: make(map[rejectKey]*rejectAgg), seen: make(map[rejectKey]bool)}
}

// reject records rj (aggregated) and returns it as the call's error. If the
// ledger cannot record even the first refusal of a key, the error says so:
// a refusal is still a refusal, fail closed.
func (s *Server) reject(user, device, remote string, rj *Rejection) error {
	s.metrics.rejected.WithLabelValues(rj.Code).Inc()
	if rj.status == codes.OK {
		rj.status = codes.PermissionDenied
	}
	r := s.rejects
	k := rejectKey{user, device, rj.Code}
	r.mu.Lock()
	if len(r.seen) >= maxRejectKeys && !r.seen[k] {
		k = rejectKey{"*", "*", rj.Code}
	}
	first := !r.seen[k]
	r.seen[k] = true
	if !first {
		a := r.pending[k]
		if a == nil {
			a = &rejectAgg{}
			r.pending[k] = a
		}
		a.count++
		a.reason, a.remote = rj.Reason, remote
	}
	r.mu.Unlock()
	if first {
		if _, err := s.publish(rejectEvent(k, rj.Reason, remote, 1)); err != nil {
			return err
		}
	}
	return rj
}

func rejectEvent(k rejectKey, reason, remote string, n uint32) *eventpb.Event {
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED, User: k.user, Device: k.device, Actor: "system", Reason: reason,
		Body: &eventpb.Event_ConnectRejected{ConnectRejected: &eventpb.ConnectRejected{Code: k.code, Count: n, RemoteAddr: remote}}}
}

func (r *rejects) loop() {
	defer r.s.bg.Done()
	t := time.NewTicker(r.s.cfg.RejectWindow)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.flush()
		case <-r.s.stopBg:
			return
		}
	}
}

// flush records the counted refusals and starts a new window.
func (r *rejects) flush() {
	r.mu.Lock()
	pending := r.pending
	r.pending = make(map[rejectKey]*rejectAgg)
	clear(r.seen)
	r.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	evs := make([]*eventpb.Event, 0, len(pending))
	for k, a := range pending {
		evs = append(evs, rejectEvent(k, a.reason, a.remote, a.count))
	}
	if _, err := r.s.publish(evs...); err != nil {
		r.s.log.Error("could not record aggregated connect rejections", "keys", len(evs), "err", err)
	}
}
