package main

// Phase 2: kicks through the Admin API, timed to the client seeing its end, and read back from the ledger.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

func (b *bench) adminCtx(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+b.token), cancel
}

// kickTimeout is how long a kick waits for its client to see the end;
// a kick that takes longer counts as kickTimeout in the percentiles.
const kickTimeout = 5 * time.Second

// kickAll kicks o.kicks distinct random sessions one after another and times
// each from the call to the moment its client sees the stream end. The
// kicks allow reconnecting: each kicked client resumes after its backoff,
// and the kicks go on meanwhile, so the others live at a kick are N-1 minus
// the few still on their way back (recorded per kick). In cluster mode
// every kick goes through the first node to a session another node holds.
func (b *bench) kickAll() error {
	k := &b.res.Kick
	k.N = b.o.kicks
	if k.N == 0 {
		return nil
	}
	if err := b.waitAllLive("before the kicks", time.Minute); err != nil {
		return err
	}
	order, err := b.kickTargets(k.N)
	if err != nil {
		return err
	}
	var perNode []int
	if b.res.Cluster != nil {
		perNode = make([]int, len(b.nodes))
		b.res.Cluster.KicksPerNode = perNode
	}
	if b.o.profile != "" {
		done := b.cpuProfile("kicks")
		defer done()
	}
	var calls, frames, ends []time.Duration
	var others []int
	var done []kickDone
	for _, i := range order {
		s := b.sessions[i]
		id, ended := s.current()
		if ended == nil {
			return fmt.Errorf("kick: session of %s is not live", s.user)
		}
		if perNode != nil {
			at := b.nodeIndex(s.node())
			if at <= 0 {
				return fmt.Errorf("kick: session of %s is on %q, not on a node other than %s", s.user, s.node(), b.nodes[0].label())
			}
			perNode[at]++
		}
		others = append(others, int(b.live.Load())-1)
		ctx, cancel := b.adminCtx(10 * time.Second)
		t0 := time.Now()
		rep, err := b.admin.Kick(ctx, &hubpb.KickRequest{SessionId: id, Reason: "hubbench", Mode: hubpb.KickMode_KICK_MODE_GRACEFUL, Reconnect: hubpb.Reconnect_RECONNECT_ALLOWED})
		callDone := time.Now()
		cancel()
		if err != nil {
			return fmt.Errorf("kick %s: %w", id, err)
		}
		done = append(done, kickDone{seq: rep.GetSeq(), eventID: rep.GetEventId(), session: id})
		select {
		case <-ended:
			s.mu.Lock()
			ends = append(ends, s.endedAt.Sub(t0))
			if s.frameAt.After(t0) { // no frame: the stream ended without one
				frames = append(frames, s.frameAt.Sub(t0))
			}
			s.mu.Unlock()
		case <-time.After(kickTimeout):
			k.Timeouts++
			ends = append(ends, kickTimeout)
		}
		calls = append(calls, callDone.Sub(t0))
	}
	k.CallP50, k.CallP99 = pct(calls, 50), pct(calls, 99)
	k.FrameP50, k.FrameP99 = pct(frames, 50), pct(frames, 99)
	k.EndP50, k.EndP99, k.EndMax = pct(ends, 50), pct(ends, 99), pct(ends, 100)
	slices.Sort(others)
	k.LiveMin, k.LiveMedian = others[0], others[len(others)/2]
	if err := b.waitAllLive("after the kicks", time.Minute); err != nil {
		return err
	}
	k.LedgerSeq = b.headSeq()
	if err := b.kicksRecorded(done, 30*time.Second); err != nil {
		return fmt.Errorf("kick: not durable: %w", err)
	}
	k.Durable = true
	b.printf("kick: %d kicks with %d-%d others live (median %d): call p50 %.2fms p99 %.2fms; stream end p50 %.2fms p99 %.2fms max %.2fms (%d timeouts, counted as %s); all %d live again",
		k.N, k.LiveMin, len(b.sessions)-1, k.LiveMedian, k.CallP50, k.CallP99, k.EndP50, k.EndP99, k.EndMax, k.Timeouts, kickTimeout, len(b.sessions))
	if perNode != nil {
		b.printf("kick: every kick through %s; the kicked sessions were on the nodes %v (%s)", b.nodes[0].label(), perNode, b.nodeList())
	}
	return nil
}

// kickTargets picks n distinct random sessions: any in single mode; in
// cluster mode only sessions held by a node other than the first, which
// the kicks go through.
func (b *bench) kickTargets(n int) ([]int, error) {
	perm := rand.Perm(len(b.sessions))
	if !b.o.clustered() {
		return perm[:n], nil
	}
	var order []int
	for _, i := range perm {
		if len(order) == n {
			break
		}
		if at := b.nodeIndex(b.sessions[i].node()); at > 0 {
			order = append(order, i)
		}
	}
	if len(order) < n {
		return nil, fmt.Errorf("kick: only %d sessions are on nodes other than %s; %d kicks need as many", len(order), b.nodes[0].label(), n)
	}
	return order, nil
}

// kickDone is what a kick's ActionReply said was recorded.
type kickDone struct {
	seq     uint64
	eventID string
	session string
}

// kicksRecorded checks in hubd's ledger, read back through its Audit
// service, that each kick is recorded at the seq its ActionReply gave, as
// the kick_requested of its session with the event id the reply gave, and
// that the session's end was recorded after it as caused by that kick.
// The ends are recorded as the sessions end, so it waits up to wait for
// the last of them.
func (b *bench) kicksRecorded(kicks []kickDone, wait time.Duration) error {
	if len(kicks) == 0 {
		return nil
	}
	ac, err := audit.NewClient(b.nodes[0].listen, b.token)
	if err != nil {
		return err
	}
	defer ac.Close()
	from := slices.MinFunc(kicks, func(a, c kickDone) int { return cmp.Compare(a.seq, c.seq) }).seq
	deadline := time.Now().Add(wait)
	for {
		bySeq := map[uint64]*ledger.Record{}
		ends := map[string][]*ledger.Record{}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := ac.Events(ctx, audit.Filter{Types: []eventpb.EventType{eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED}},
			false, func(r *ledger.Record) error {
				if r.Seq < from {
					return nil
				}
				if r.Event.GetType() == eventpb.EventType_EVENT_TYPE_KICK_REQUESTED {
					bySeq[r.Seq] = r
				} else {
					ends[r.Event.GetSession()] = append(ends[r.Event.GetSession()], r)
				}
				return nil
			})
		cancel()
		if err != nil {
			return fmt.Errorf("read the kicks back from hubd's ledger: %w", err)
		}
		problem := ""
		for _, k := range kicks {
			r := bySeq[k.seq]
			if r == nil || r.ID.String() != k.eventID || r.Event.GetSession() != k.session {
				problem = fmt.Sprintf("the kick of %s acknowledged as seq %d (%s) is not that kick_requested in the ledger", k.session, k.seq, k.eventID)
				break
			}
			ended := false
			for _, e := range ends[k.session] {
				d := e.Event.GetSessionDisconnected()
				if e.Seq > k.seq && d.GetCause() == eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED && bytes.Equal(d.GetCauseEventId(), r.ID[:]) {
					ended = true
					break
				}
			}
			if !ended {
				problem = fmt.Sprintf("no session_disconnected of %s caused by the kick at seq %d", k.session, k.seq)
				break
			}
		}
		if problem == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(problem)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// headSeq reads the ledger head from the first node's metrics (0 when
// hubbench did not start it).
func (b *bench) headSeq() uint64 {
	if b.nodes[0].metrics == "" {
		return 0
	}
	res, err := b.http.Get("http://" + b.nodes[0].metrics + "/metrics")
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "sessionledger_ledger_head_seq "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return uint64(f)
		}
	}
	return 0
}
