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
		done := b.cpuProfile("kicks", 8)
		defer done()
	}
	var calls, frames, ends []time.Duration
	var others []int
	var done []kickDone
	appendsBefore, enforceBefore, commitsBefore := b.histogram(appendHistogram), b.histogram(enforceHistogram), b.histogram(commitHistogram)
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
	appends := b.histogram(appendHistogram).since(appendsBefore)
	k.Appends, k.AppendP50, k.AppendP99 = int(appends.count), appends.quantile(0.5), appends.quantile(0.99)
	enforce := b.histogram(enforceHistogram).since(enforceBefore)
	k.EnforceP50, k.EnforceP99 = enforce.quantile(0.5), enforce.quantile(0.99)
	commits := b.histogram(commitHistogram).since(commitsBefore)
	k.Commits, k.CommitP50, k.CommitP99 = int(commits.count), commits.quantile(0.5), commits.quantile(0.99)
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
	where := "hubd"
	if len(b.nodes) > 1 {
		where = "the hubd nodes together"
	}
	b.printf("kick: meanwhile in %s, %d durable appends (the kicks', the ends' and the resumes') took p50 %.2fms p99 %.2fms, in %d ledger commits of p50 %.2fms p99 %.2fms; kick event to session end p50 %.2fms p99 %.2fms (its histograms)",
		where, k.Appends, k.AppendP50, k.AppendP99, k.Commits, k.CommitP50, k.CommitP99, k.EnforceP50, k.EnforceP99)
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

// The hub's histograms the kick phase reads.
const (
	appendHistogram  = "sessionledger_ledger_append_seconds"
	enforceHistogram = "sessionledger_enforce_seconds"
	commitHistogram  = "sessionledger_ledger_commit_seconds"
)

// hist is a Prometheus histogram as scraped: cumulative counts by upper
// bound (seconds), ascending, and the total count.
type hist struct {
	le, cum []float64
	count   float64
}

// since returns the observations made between earlier and h.
func (h hist) since(earlier hist) hist {
	d := hist{le: h.le, cum: slices.Clone(h.cum), count: h.count - earlier.count}
	if len(earlier.cum) == len(d.cum) {
		for i := range d.cum {
			d.cum[i] -= earlier.cum[i]
		}
	}
	return d
}

// plus returns the observations of h and o together (the same buckets:
// the same histogram of two nodes).
func (h hist) plus(o hist) hist {
	if len(h.le) == 0 {
		return o
	}
	d := hist{le: h.le, cum: slices.Clone(h.cum), count: h.count + o.count}
	if len(o.cum) == len(d.cum) {
		for i := range d.cum {
			d.cum[i] += o.cum[i]
		}
	}
	return d
}

// quantile estimates the q-quantile in milliseconds as Prometheus's
// histogram_quantile does: linearly within the bucket it falls in, and
// the highest finite bound if it falls beyond them. 0 without observations.
func (h hist) quantile(q float64) float64 {
	if h.count <= 0 || len(h.le) == 0 {
		return 0
	}
	rank := q * h.count
	lower, below := 0.0, 0.0
	for i, le := range h.le {
		if h.cum[i] >= rank {
			if h.cum[i] == below {
				return le * 1000
			}
			return (lower + (le-lower)*(rank-below)/(h.cum[i]-below)) * 1000
		}
		lower, below = le, h.cum[i]
	}
	return lower * 1000
}

// histogram reads one unlabelled histogram from the metrics of every node
// hubbench started, summed (empty if absent).
func (b *bench) histogram(name string) hist {
	var h hist
	for _, n := range b.nodes {
		if n.metrics != "" {
			h = h.plus(b.histogramOf(n, name))
		}
	}
	return h
}

func (b *bench) histogramOf(n *node, name string) hist {
	var h hist
	res, err := b.http.Get("http://" + n.metrics + "/metrics")
	if err != nil {
		return h
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+`_bucket{le="`); ok {
			bound, v, ok := strings.Cut(rest, `"} `)
			le, err1 := strconv.ParseFloat(bound, 64)
			n, err2 := strconv.ParseFloat(v, 64)
			if ok && err1 == nil && err2 == nil && bound != "+Inf" {
				h.le, h.cum = append(h.le, le), append(h.cum, n)
			}
		} else if v, ok := strings.CutPrefix(line, name+"_count "); ok {
			h.count, _ = strconv.ParseFloat(v, 64)
		}
	}
	return h
}

// headSeq reads the ledger head from the first node's metrics (0 when
// hubbench did not start it).
func (b *bench) headSeq() uint64 {
	return uint64(b.metricOf(b.nodes[0], "sessionledger_ledger_head_seq"))
}

// metric reads one unlabelled series from the metrics of every node
// hubbench started, summed (0 if absent).
func (b *bench) metric(name string) float64 {
	var sum float64
	for _, n := range b.nodes {
		sum += b.metricOf(n, name)
	}
	return sum
}

// metricOf reads one unlabelled series from n's metrics (0 if absent, or
// when hubbench did not start n).
func (b *bench) metricOf(n *node, name string) float64 {
	if n.metrics == "" {
		return 0
	}
	res, err := b.http.Get("http://" + n.metrics + "/metrics")
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
