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

	"github.com/oklog/ulid/v2"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// rateLimiter is the per-user connect limit: one token bucket per user
// (golang.org/x/time/rate), refilled at perMinute a minute and holding up to
// burst. A user who waited long enough may connect burst times at once,
// then once per 1/rate; in any minute at most burst + perMinute connects
// pass, wherever the minute starts (a fixed window shared by all users let
// one burst twice its limit across the window's edge). A bucket that is
// full again is the same as none, so sweeps drop those: memory follows the
// users who connected recently.
type rateLimiter struct {
	mu      sync.Mutex
	limit   rate.Limit
	burst   int
	users   map[string]*rate.Limiter
	calls   int
	sweepAt int // len(users) that triggers the next sweep
}

// minSweep is the fewest buckets that make a sweep worth it.
const minSweep = 1024

func newRateLimiter(perMinute, burst int) *rateLimiter {
	return &rateLimiter{limit: rate.Limit(float64(perMinute) / 60), burst: burst, users: make(map[string]*rate.Limiter), sweepAt: minSweep}
}

func (r *rateLimiter) allow(user string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.users[user]
	if l == nil {
		if len(r.users) >= r.sweepAt {
			r.sweep(now)
		}
		l = rate.NewLimiter(r.limit, r.burst)
		r.users[user] = l
	}
	return l.AllowN(now, 1)
}

// sweep drops the buckets that are full at now, and sets the next sweep
// at twice what is left, so its cost is spread over the inserts between.
func (r *rateLimiter) sweep(now time.Time) {
	for u, l := range r.users {
		if l.TokensAt(now) >= float64(r.burst) {
			delete(r.users, u)
		}
	}
	r.sweepAt = max(minSweep, 2*len(r.users))
}

// buckets is how many users have a bucket (tests).
func (r *rateLimiter) buckets() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.users)
}

// frameBucket paces one session's client frames: a token bucket of rate
// frames a second holding up to burst. Only the session's receiver uses
// it, so it has no lock.
type frameBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newFrameBucket(rate int) *frameBucket {
	return &frameBucket{rate: float64(rate), burst: float64(2 * rate), tokens: float64(2 * rate)}
}

// take takes a token for a frame read at now and returns how long the
// receiver must wait before it reads the next one (0: at once). Waiting
// it out repays the token the frame overdrew.
func (b *frameBucket) take(now time.Time) time.Duration {
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// Bounds of connect_rejected (and admin_call_refused) recording, per
// RejectWindow. A refusal is keyed by (user, code), never by the device:
// the device is the client's to choose, and keying on it let one user
// write an event per invented device. (A refused admin call is keyed by
// (actor, method).) The first refusal of a key is written at once, up to
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

// What a refusal refused.
const (
	kindConnect   = iota // a connect or resume: connect_rejected
	kindAdminCall        // an admin call outside its role: admin_call_refused
)

// rejectKey is what refusals are counted by. overflow marks the one key
// per kind and code that counts the users (or tokens) beyond maxRejectKeys:
// a refusal before any Hello (a WebSocket's refused origin) has no user
// and is not that overflow.
type rejectKey struct {
	kind       uint8
	user, code string
	overflow   bool
}

// refusal is one refused attempt, as the aggregate remembers it.
type refusal struct {
	device, reason, remote string
	causeID                ulid.ULID // the event behind it, if any
	role, needs            string    // admin calls
}

type rejectAgg struct {
	count   uint32
	last    refusal
	devices []string // distinct, first seen first, at most maxRejectDevices
	more    bool     // some devices were not remembered
}

func (a *rejectAgg) add(r refusal) {
	a.count++
	a.last = r
	if slices.Contains(a.devices, r.device) {
		return
	}
	if len(a.devices) < maxRejectDevices {
		a.devices = append(a.devices, r.device)
	} else {
		a.more = true
	}
}

// rejects records refusals within the bounds above.
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
	if _, err := s.rejects.record(rejectKey{kind: kindConnect, user: user, code: rj.Code},
		refusal{device: device, reason: rj.Reason, remote: remote, causeID: rj.EventID}); err != nil {
		return err
	}
	return rj
}

// record records the refusal r under key k: at once if it is the key's
// first in this window (and the window's immediate budget is not spent),
// else counted for the window's end. now says which; err is the ledger's
// for one written at once.
func (r *rejects) record(k rejectKey, ref refusal) (now bool, err error) {
	r.mu.Lock()
	now = !r.immediate[k] && len(r.immediate) < r.maxImmediate
	if now {
		r.immediate[k] = true
	} else {
		if _, ok := r.pending[k]; !ok && len(r.pending) >= r.maxKeys {
			k.user, k.overflow = "", true // the overflow of this code
		}
		a := r.pending[k]
		if a == nil {
			a = &rejectAgg{}
			r.pending[k] = a
		}
		a.add(ref)
	}
	r.mu.Unlock()
	if now {
		a := &rejectAgg{}
		a.add(ref)
		if _, err := r.s.publish(context.Background(), rejectEvent(k, a)); err != nil {
			return true, err
		}
	}
	return now, nil
}

// rejectEvent is the connect_rejected (or admin_call_refused) event for the
// refusals a counts. The device is set when they all came from one;
// otherwise the reason lists the devices (the event schema has no field
// for several).
func rejectEvent(k rejectKey, a *rejectAgg) *eventpb.Event {
	if k.kind == kindAdminCall {
		ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_ADMIN_CALL_REFUSED, Actor: k.user, Reason: a.last.reason,
			Body: &eventpb.Event_AdminCallRefused{AdminCallRefused: &eventpb.AdminCallRefused{Method: k.code, Role: a.last.role,
				Needs: a.last.needs, Count: a.count, RemoteAddr: a.last.remote}}}
		if k.overflow {
			ev.Actor = "system"
			ev.Reason = fmt.Sprintf("%s (refusals of tokens beyond the %d recorded one by one in this window)", a.last.reason, maxRejectKeys)
		}
		return ev
	}
	body := &eventpb.ConnectRejected{Code: k.code, Count: a.count, RemoteAddr: a.last.remote}
	if a.last.causeID != (ulid.ULID{}) {
		body.CauseEventId = a.last.causeID[:]
	}
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED, User: k.user, Actor: "system", Reason: a.last.reason,
		Body: &eventpb.Event_ConnectRejected{ConnectRejected: body}}
	switch {
	case k.overflow:
		ev.Reason = fmt.Sprintf("%s (refusals of users beyond the %d recorded one by one in this window)", a.last.reason, maxRejectKeys)
	case len(a.devices) == 1 && !a.more:
		ev.Device = a.devices[0]
	default:
		n := strconv.Itoa(len(a.devices))
		if a.more {
			n = "more than " + n
		}
		ev.Reason = fmt.Sprintf("%s (from %s devices: %s)", a.last.reason, n, strings.Join(a.devices, ", "))
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
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.code, b.code), cmp.Compare(a.user, b.user), boolCmp(a.overflow, b.overflow))
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
