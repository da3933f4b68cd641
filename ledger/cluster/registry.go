package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionledger/sessionledger/ledger"

	"github.com/sessionledger/sessionledger/internal/atomicfile"
)

// Buckets in the cluster's JetStream key-value store. Neither is part of
// the audit log: node states change every second and mean nothing later.
const (
	// NodesBucket holds each live node's state under its name; an entry
	// expires NodeTTL after its node last wrote it.
	NodesBucket = "sessionledger_nodes"
	// ConfigBucket holds what every node must agree on: the log id and
	// the shared files (the resume key), set by the first node, and the
	// settings a node changes for all (Node.SetSetting: hubd's admin
	// token file).
	ConfigBucket = "sessionledger_config"
)

// Liveness timing (Config.Heartbeat, Config.LostAfter): each node
// publishes a heartbeat and writes its state (NodesBucket, whose entries
// expire after LostAfter) every heartbeat; a node not heard for LostAfter
// is dead to the others (liveness).
const (
	DefaultHeartbeat = time.Second
	DefaultLostAfter = 3 * DefaultHeartbeat
)

// checkpointStep is the distance between the seqs at which nodes report
// their chain hash, and checkpointsKept how many they report: two nodes
// within checkpointStep*checkpointsKept records of each other share one,
// and a replica whose hash differs there is flagged.
const (
	checkpointStep  = 64
	checkpointsKept = 8
)

// NodeState is what a node tells the cluster about itself.
type NodeState struct {
	Node     string `json:"node"`
	Instance string `json:"instance"`
	// Addr is the node's gRPC address, as its operator gave it.
	Addr string `json:"addr,omitempty"`
	// HeadSeq and HeadHash are its ledger's newest record.
	HeadSeq  uint64 `json:"head_seq"`
	HeadHash string `json:"head_hash"`
	// AppliedSeq is what its projections applied.
	AppliedSeq uint64 `json:"applied_seq"`
	// Lag is the stream messages it had not stored yet.
	Lag uint64 `json:"lag"`
	// Sessions is the live sessions it holds.
	Sessions int `json:"sessions"`
	// Checkpoints are its chain hashes at the latest multiples of
	// checkpointStep, newest first.
	Checkpoints []Checkpoint `json:"checkpoints,omitempty"`
	Updated     time.Time    `json:"updated"`
}

// Checkpoint is a replica's chain hash at a seq.
type Checkpoint struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// Report is what the daemon adds to a node's state: its address, the
// projections' applied seq and its sessions.
type Report func() (addr string, applied uint64, sessions int)

// registry keeps this node's entry in NodesBucket fresh.
type registry struct {
	n      *Node
	nodes  jetstream.KeyValue
	mu     sync.Mutex
	report Report
	repl   *replicator // set once it runs: the loop reports from the start
	stop   chan struct{}
	done   chan struct{}
}

// agree settles, in ConfigBucket, what every node must share: the shared
// files, and the log id (the first node's, or a new one).
func (n *Node) agree(ctx context.Context) error {
	var config jetstream.KeyValue
	err := retry(ctx, func(ctx context.Context) (err error) {
		config, err = n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: ConfigBucket,
			Storage: jetstream.FileStorage, Replicas: n.cfg.Replicas, Description: "sessionledger: settings every node shares"})
		return err
	})
	if err != nil {
		return fmt.Errorf("cluster settings: %w", err)
	}
	n.config = config
	for _, f := range n.cfg.Shared {
		if err := share(ctx, config, f, n.log); err != nil {
			return err
		}
	}
	err = retry(ctx, func(ctx context.Context) error {
		e, err := config.Get(ctx, "log_id")
		if err == nil {
			n.logID = string(e.Value())
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
		id := ledger.NewLogID()
		if _, err := config.Create(ctx, "log_id", []byte(id)); err != nil {
			return err // another node was first: read its id on the next try
		}
		n.logID = id
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster settings (log id): %w", err)
	}
	return nil
}

func newRegistry(ctx context.Context, n *Node) (*registry, error) {
	var nodes jetstream.KeyValue
	err := retry(ctx, func(ctx context.Context) (err error) {
		nodes, err = n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: NodesBucket, TTL: n.cfg.LostAfter,
			Storage: jetstream.FileStorage, Replicas: n.cfg.Replicas, Description: "sessionledger: live nodes"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("node registry: %w", err)
	}
	r := &registry{n: n, nodes: nodes, stop: make(chan struct{}), done: make(chan struct{})}
	var taken error
	err = retry(ctx, func(ctx context.Context) error {
		taken = nil
		b, _ := json.Marshal(r.state())
		_, err := nodes.Create(ctx, n.cfg.Node, b)
		if err == nil || !errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
		e, err := nodes.Get(ctx, n.cfg.Node)
		if err != nil {
			return err
		}
		var other NodeState
		_ = json.Unmarshal(e.Value(), &other)
		if other.Instance != n.cfg.InstanceID {
			taken = fmt.Errorf("node name %q is taken by another running hubd (address %s, seen %s ago): give this node another --node, or stop that one",
				n.cfg.Node, other.Addr, time.Since(e.Created()).Round(time.Second))
			return nil
		}
		// Ourselves, restarted before our entry expired.
		_, err = nodes.Update(ctx, n.cfg.Node, b, e.Revision())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("node registry: %w", err)
	}
	if taken != nil {
		return nil, taken
	}
	go r.loop()
	return r, nil
}

// retry calls fn until it succeeds or ctx ends, each call with a short
// deadline of its own: a JetStream request made while the cluster (or a
// just created stream) has no leader gets no answer at all.
func retry(ctx context.Context, fn func(context.Context) error) error {
	for {
		try, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := fn(try)
		cancel()
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// permanent ends a retry at once.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }

// SharedFile is a file every node of the cluster must hold the same.
type SharedFile struct {
	// Key names it in ConfigBucket.
	Key string
	// Path is this node's copy.
	Path string
	// Create makes the file's content for the first node that has none.
	Create func() ([]byte, error)
}

// share makes this node's copy of f the cluster's: a node without one
// takes the cluster's (or, the first, gives its new one to the cluster);
// a node whose copy differs is refused.
func share(ctx context.Context, kv jetstream.KeyValue, f SharedFile, log *slog.Logger) error {
	local, err := os.ReadFile(f.Path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var theirs []byte
	err = retry(ctx, func(ctx context.Context) error {
		e, err := kv.Get(ctx, f.Key)
		switch {
		case err == nil:
			theirs = e.Value()
			return nil
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return err
		}
		// The first node: give the cluster this node's file, or a new one.
		mine := local
		if mine == nil {
			if mine, err = f.Create(); err != nil {
				return permanent{err}
			}
		}
		if _, err := kv.Create(ctx, f.Key, mine); err != nil {
			return err // another node was first: read theirs on the next try
		}
		theirs = mine
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster settings (%s): %w", f.Key, err)
	}
	switch {
	case local == nil:
		if _, err := atomicfile.CreateOnce(f.Path, theirs); err != nil {
			return fmt.Errorf("write the cluster's %s to %s: %w", f.Key, f.Path, err)
		}
		log.Info("took the cluster's copy of a shared file", "file", f.Path)
	case !bytes.Equal(local, theirs):
		return fmt.Errorf("%s differs from the cluster's %s, which every node must share: move this node's file away to take the cluster's, or give every node this one",
			f.Path, f.Key)
	}
	return nil
}

// state is this node's state now.
func (r *registry) state() NodeState {
	n := r.n
	head := n.store.Head()
	st := NodeState{Node: n.cfg.Node, Instance: n.cfg.InstanceID, HeadSeq: head.Seq, HeadHash: fmt.Sprintf("%x", head.Hash), Updated: time.Now().UTC()}
	r.mu.Lock()
	report, repl := r.report, r.repl
	r.mu.Unlock()
	if repl != nil {
		st.Lag = repl.lag.Load()
	}
	if report != nil {
		st.Addr, st.AppliedSeq, st.Sessions = report()
	}
	for k := head.Seq / checkpointStep * checkpointStep; k > 0 && len(st.Checkpoints) < checkpointsKept; k -= checkpointStep {
		rec, err := n.store.Get(k)
		if err != nil {
			break
		}
		st.Checkpoints = append(st.Checkpoints, Checkpoint{Seq: k, Hash: fmt.Sprintf("%x", rec.Hash)})
	}
	return st
}

func (r *registry) loop() {
	defer close(r.done)
	t := time.NewTicker(r.n.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-r.stop:
			return
		}
		b, _ := json.Marshal(r.state())
		// A put is a replicated write: on a busy machine it can take longer
		// than a heartbeat, and one that completes late still keeps the
		// entry from expiring.
		ctx, cancel := context.WithTimeout(context.Background(), max(r.n.cfg.Heartbeat, r.n.cfg.LostAfter/2))
		if _, err := r.nodes.Put(ctx, r.n.cfg.Node, b); err != nil {
			r.n.log.Debug("could not report this node's state", "err", err)
		}
		cancel()
	}
}

func (r *registry) close() {
	close(r.stop)
	<-r.done
}

// following tells the registry the replicator runs (its lag is reported).
func (r *registry) following(repl *replicator) {
	r.mu.Lock()
	r.repl = repl
	r.mu.Unlock()
}

// SetReport installs what the daemon adds to this node's state.
func (n *Node) SetReport(fn Report) {
	n.reg.mu.Lock()
	n.reg.report = fn
	n.reg.mu.Unlock()
}

// listTimeout bounds one reading of the node registry (Nodes): long
// enough for a loaded machine's JetStream API, far shorter than a caller's.
const listTimeout = 5 * time.Second

// Nodes returns the live nodes' states, this one first, and marks which
// disagree: see Compare.
//
// Reading the registry is bounded by listTimeout whatever ctx allows: the
// key listing is a consumer JetStream places on some server, and one
// placed on a server that just died (the meta leader has not noticed yet)
// delivers nothing, so the listing would wait for as long as ctx lets it.
// The caller gets this node's own state and the error instead, and the
// next call lists through a new consumer.
func (n *Node) Nodes(ctx context.Context) ([]NodeState, error) {
	self := n.reg.state()
	out := []NodeState{self}
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	keys, err := n.reg.nodes.ListKeys(ctx)
	if err != nil {
		return out, fmt.Errorf("node registry: %w", err)
	}
	for key := range keys.Keys() {
		if key == n.cfg.Node {
			continue
		}
		e, err := n.reg.nodes.Get(ctx, key)
		if err != nil {
			continue // expired in between
		}
		var st NodeState
		if json.Unmarshal(e.Value(), &st) == nil {
			out = append(out, st)
		}
	}
	if err := ctx.Err(); err != nil {
		// The listing stopped with ctx, not at its end: out may lack nodes.
		return out[:1], fmt.Errorf("node registry: listing the nodes: %w", err)
	}
	slices.SortFunc(out[1:], func(a, b NodeState) int {
		switch {
		case a.Node < b.Node:
			return -1
		case a.Node > b.Node:
			return 1
		}
		return 0
	})
	return out, nil
}

// Dead returns, of names, the nodes the cluster no longer sees alive: not
// heard for LostAfter (killed, powered off, or cut off from NATS). This
// node is never dead to itself. It judges only once it has heard its own
// heartbeats without a gap for LostAfter (ErrUnsteady before): a node cut
// off from NATS, or just started, hears no one.
func (n *Node) Dead(_ context.Context, names []string) ([]string, error) {
	return n.live.dead(names)
}

// Alive returns the names of the nodes the cluster sees alive, this one
// included, in order.
func (n *Node) Alive(context.Context) ([]string, error) {
	return n.live.alive(), nil
}

// Compare finds the newest seq at which every node reported its chain
// hash (a checkpoint, or the head when all heads are equal), and the
// nodes whose hash there is not the one most nodes have: a tampered or
// diverged replica. When no hash has more nodes than every other (two
// nodes that disagree), every node is listed: the log alone cannot say
// which is right. at is 0 when the nodes share no such seq.
func Compare(nodes []NodeState) (at uint64, hashes map[string]string, differ []string) {
	if len(nodes) == 0 {
		return 0, nil, nil
	}
	hashAt := func(st NodeState, seq uint64) (string, bool) {
		if st.HeadSeq == seq {
			return st.HeadHash, true
		}
		for _, c := range st.Checkpoints {
			if c.Seq == seq {
				return c.Hash, true
			}
		}
		return "", false
	}
	var candidates []uint64
	candidates = append(candidates, nodes[0].HeadSeq)
	for _, c := range nodes[0].Checkpoints {
		candidates = append(candidates, c.Seq)
	}
	for _, seq := range candidates {
		if seq == 0 {
			continue
		}
		all := map[string]string{}
		for _, st := range nodes {
			h, ok := hashAt(st, seq)
			if !ok {
				break
			}
			all[st.Node] = h
		}
		if len(all) != len(nodes) {
			continue
		}
		votes := map[string]int{}
		for _, h := range all {
			votes[h]++
		}
		best, tie := "", false
		for h, v := range votes {
			switch {
			case best == "" || v > votes[best]:
				best, tie = h, false
			case v == votes[best]:
				tie = true
			}
		}
		for _, st := range nodes {
			if tie || all[st.Node] != best {
				differ = append(differ, st.Node)
			}
		}
		return seq, all, differ
	}
	return 0, nil, nil
}
