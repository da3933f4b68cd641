package hub

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
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

// Bounds of connect_rejected recording, per RejectWindow. A refusal is
// keyed by (user, code), never by the device: the device is the client's
// to choose, and keying on it let one user write an event per invented
// device. The first refusal of a key is written at once, up to
// maxImmediateRejects of them per window; every other refusal is counted
// and written at the window's end, one event per key for at most
// maxRejectKeys keys, and beyond that one event per code without a user.
// So a window writes at most maxImmediateRejects + maxRejectKeys + one per
// code events, whatever the flood.
const (
	maxImmediateRejects = 64
	maxRejectKeys       = 256
	// maxRejectDevices bounds the distinct devices remembered per key
	// (the event says "at least" beyond it).
	maxRejectDevices = 16
)

// rejectKey is what refusals are counted by. overflow marks the one key
// per code that counts the users beyond maxRejectKeys.
type rejectKey struct {
	user, code string
	overflow   bool
}

type rejectAgg struct {
	count   uint32
	reason  string
	remote  string
	devices []string // distinct, first seen first, at most maxRejectDevices
	more    bool     // some devices were not remembered
}

func (a *rejectAgg) add(device, reason, remote string) {
	a.count++
	a.reason, a.remote = reason, remote
	if slices.Contains(a.devices, device) {
		return
	}
	if len(a.devices) < maxRejectDevices {
		a.devices = append(a.devices, device)
	} else {
		a.more = true
	}
}

// rejects records refused connects within the bounds above.
type rejects struct {
	s            *Server
	maxImmediate int
	maxKeys      int

	mu        sync.Mutex
	immediate map[rejectKey]bool // keys written at once in this window
	pending   map[rejectKey]*rejectAgg
}

func newRejects(s *Server) *rejects {
	return &rejects{s: s, maxImmediate: maxImmediateRejects, maxKeys: maxRejectKeys,
		immediate: make(map[rejectKey]bool), pending: make(map[rejectKey]*rejectAgg)}
}

// reject records rj (aggregated) and returns it as the call's error. If the
// ledger cannot record a refusal written at once, the error says so: a
// refusal is still a refusal, fail closed.
func (s *Server) reject(user, device, remote string, rj *Rejection) error {
	s.metrics.rejected.WithLabelValues(rj.Code).Inc()
	if rj.status == codes.OK {
		rj.status = codes.PermissionDenied
	}
	r := s.rejects
	k := rejectKey{user: user, code: rj.Code}
	r.mu.Lock()
	now := !r.immediate[k] && len(r.immediate) < r.maxImmediate
	if now {
		r.immediate[k] = true
	} else {
		if _, ok := r.pending[k]; !ok && len(r.pending) >= r.maxKeys {
			k = rejectKey{code: rj.Code, overflow: true} // the overflow of this code
		}
		a := r.pending[k]
		if a == nil {
			a = &rejectAgg{}
			r.pending[k] = a
		}
		a.add(device, rj.Reason, remote)
	}
	r.mu.Unlock()
	if now {
		a := &rejectAgg{}
		a.add(device, rj.Reason, remote)
		if _, err := s.publish(context.Background(), rejectEvent(k, a)); err != nil {
			return err
		}
	}
	return rj
}

// rejectEvent is the connect_rejected event for the refusals a counts. The
// device is set when they all came from one; otherwise the reason lists
// the devices (the event schema has no field for several).
func rejectEvent(k rejectKey, a *rejectAgg) *eventpb.Event {
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED, User: k.user, Actor: "system", Reason: a.reason,
		Body: &eventpb.Event_ConnectRejected{ConnectRejected: &eventpb.ConnectRejected{Code: k.code, Count: a.count, RemoteAddr: a.remote}}}
	switch {
	case k.overflow:
		ev.Reason = fmt.Sprintf("%s (refusals of users beyond the %d recorded one by one in this window)", a.reason, maxRejectKeys)
	case len(a.devices) == 1 && !a.more:
		ev.Device = a.devices[0]
	default:
		n := strconv.Itoa(len(a.devices))
		if a.more {
			n = "more than " + n
		}
		ev.Reason = fmt.Sprintf("%s (from %s devices: %s)", a.reason, n, strings.Join(a.devices, ", "))
	}
	return ev
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
	clear(r.immediate)
	r.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	keys := slices.SortedFunc(maps.Keys(pending), func(a, b rejectKey) int {
		return cmp.Or(cmp.Compare(a.code, b.code), cmp.Compare(a.user, b.user), boolCmp(a.overflow, b.overflow))
	})
	evs := make([]*eventpb.Event, 0, len(pending))
	for _, k := range keys {
		evs = append(evs, rejectEvent(k, pending[k]))
	}
	if _, err := r.s.publish(context.Background(), evs...); err != nil {
		r.s.log.Error("could not record aggregated connect rejections", "keys", len(evs), "err", err)
	}
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
