// Package cluster makes several hubd nodes share one totally ordered log
// on NATS JetStream, each keeping its bbolt ledger as a replica.
//
// # The log
//
// A JetStream stream (file storage, replicated by JetStream's Raft) is the
// order: its sequence is the ledger's seq. A node publishes its events
// through watermill (github.com/ThreeDotsLabs/watermill-nats/v2) onto the
// stream, with the watermill message UUID as JetStream's message id, so a
// retried publish is stored once; every node's replicator subscribes to
// the stream through watermill and appends each message to its own ledger
// at the stream's seq (ledger.Store.Replicate). What a replica stores is a
// function of the stream alone, so every node holds the same records and
// the same hash chain. The projections and the hub read the local ledger
// as on a single node.
//
// # Write-ahead
//
// Publisher.PublishStamped returns once JetStream acknowledged the message
// (stored by a quorum of the stream's replicas; embedded servers fsync
// before they acknowledge) and this node's replica holds it, with its
// stamp. Nothing takes effect before that.
//
// # Concurrency
//
// A Node and its Publisher are safe for concurrent use. Close is
// idempotent and bounded by its ctx.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionledger/sessionledger/ledger"
)

// Defaults.
const (
	// DefaultStream names the stream that holds the log.
	DefaultStream = "SESSIONLEDGER"
	// DefaultReplicas is the stream's replica count.
	DefaultReplicas = 3
	// DefaultSettleAfter is how long a message answered "outcome
	// unknown" is taken to be possibly still on its way to the stream's
	// leader. A TCP connection whose path stalls delivers what it holds
	// once the path is back, until one end gives it up: NATS does when
	// its pings go unanswered, at its defaults after about 6 minutes for
	// a client connection (2 min interval, 2 outstanding) and 90 s for a
	// route. Ten minutes is past both (replicator.settle).
	DefaultSettleAfter = 10 * time.Minute
	// DefaultPublishTimeout bounds the wait for JetStream's acknowledgement.
	DefaultPublishTimeout = 2 * time.Second
)

// Config configures this node of a cluster. Zero values take the
// defaults.
type Config struct {
	// Node names this node; no two live nodes of a cluster may share it.
	Node string
	// URLs are the client URLs of an existing NATS deployment with
	// JetStream (--nats). Leave empty with Embed.
	URLs []string
	// Embed runs an embedded NATS server (--embed-nats).
	Embed *EmbedConfig
	// Stream names the stream (default DefaultStream); Replicas is its
	// replica count (default DefaultReplicas). An existing stream whose
	// settings contradict these is refused.
	Stream   string
	Replicas int
	// PublishTimeout bounds a publish's wait for JetStream's
	// acknowledgement (default DefaultPublishTimeout); past it the publish
	// fails and the hub fails closed.
	PublishTimeout time.Duration
	// RetryFor bounds how long a publish the stream does not answer is
	// tried again (default 12s: when the stream's leader dies, NATS elects
	// a new one after a Raft election timeout of 4 to 9 s).
	RetryFor time.Duration
	// SettleAfter is how much later than an "outcome unknown" answer the
	// stream must have stamped a record this node stores for the answer to
	// be presumed not recorded (default DefaultSettleAfter;
	// replicator.settle). It must outlast what ends a stalled connection
	// between this node and the stream's leader.
	SettleAfter time.Duration
	// Heartbeat is how often the node tells the cluster it is alive
	// (default DefaultHeartbeat; a core NATS message, see liveness);
	// LostAfter how long without it makes the node dead to the others
	// (default 3 heartbeats; also the TTL of the node states in
	// NodesBucket): give every node the same.
	Heartbeat time.Duration
	LostAfter time.Duration
	// StartTimeout bounds the wait for the JetStream cluster to form and
	// the stream to be ready at start (default 60s); catching the ledger
	// up is bounded by progress instead: it fails when no record lands for
	// this long.
	StartTimeout time.Duration
	// InstanceID tells this node's data directory apart from another's
	// under the same name (hubd keeps one in DATA/node.id).
	InstanceID string
	// Shared are files every node must hold the same, which do not change
	// while the nodes run (hubd: the resume key): the first node's are
	// kept in the cluster, a node without one takes the cluster's, and a
	// node whose file differs is refused at start. A file that changes
	// while they run (hubd's admin token file) is a setting instead
	// (Node.Setting, Node.SetSetting).
	Shared []SharedFile
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.LostAfter <= 0 {
		c.LostAfter = 3 * c.Heartbeat
	}
	if c.RetryFor <= 0 {
		c.RetryFor = 12 * time.Second
	}
	if c.SettleAfter <= 0 {
		c.SettleAfter = DefaultSettleAfter
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports a configuration that cannot work.
func (c *Config) Validate() error {
	var errs []error
	if c.Node == "" {
		errs = append(errs, errors.New("a cluster node needs a name (--node)"))
	}
	if (len(c.URLs) == 0) == (c.Embed == nil) {
		errs = append(errs, errors.New("give either --nats URL[,URL...] or --embed-nats"))
	}
	if c.LostAfter < 2*c.Heartbeat {
		errs = append(errs, fmt.Errorf("--lost-after %s: want at least two heartbeats (%s)", c.LostAfter, 2*c.Heartbeat))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("--replicas %d: JetStream takes 1 to 5", c.Replicas))
	}
	return errors.Join(errs...)
}

// Node is this hubd's membership of a cluster: its NATS connection (and
// embedded server), the stream, the replicator that keeps the local ledger
// a replica of it, and the Publisher the hub records through.
type Node struct {
	cfg   Config
	log   *slog.Logger
	store *ledger.Store

	emb     *embedded
	logID   string
	url     string
	natsOpt []nats.Option
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	repl    *replicator
	// started is repl once it runs: the registry's heartbeat and the
	// lag gauge read it while Join is still starting it.
	started atomic.Pointer[replicator]
	pub     *Publisher
	reg     *registry
	config  jetstream.KeyValue // ConfigBucket, from Connect on
	live    *liveness

	healthMu sync.Mutex
	healthy  error // the last health probe's finding
	// noQuorum is set while the last probe heard the stream's leader say
	// it lacks a quorum: the publisher then refuses at once (refusal).
	noQuorum atomic.Bool

	// watch is the watchHealth goroutine's own.
	watch replicaWatch

	stop        chan struct{}
	bg          sync.WaitGroup
	closeOnce   sync.Once
	closeErr    error
	releaseOnce sync.Once
	releaseErr  error
}

// Connect is the first half of joining the cluster, before this node's
// ledger is opened: it starts the embedded NATS server if asked, connects,
// creates or checks the stream (waiting, up to StartTimeout, for the
// JetStream cluster to form), and agrees with the cluster on what every
// node must share: the shared files, and the log id every replica's
// ledger carries (LogID), so a checkpoint signed by any node names the
// same log. Open the ledger as a replica with that id, then Join.
func Connect(ctx context.Context, cfg Config) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, stop: make(chan struct{})}
	if err := n.connectCluster(ctx); err != nil {
		n.release()
		return nil, err
	}
	return n, nil
}

// Join is the second half: it checks that store (opened with
// ledger.Options{Replica: true, LogID: n.LogID()}) is a prefix of the
// stream, registers the node's name, starts the replicator and catches the
// ledger up with the stream before it returns. On error the node is
// closed.
func (n *Node) Join(ctx context.Context, store *ledger.Store) error {
	n.store = store
	if err := n.join(ctx); err != nil {
		n.release()
		return err
	}
	return nil
}

// LogID is the cluster's log id, agreed at Connect.
func (n *Node) LogID() string { return n.logID }

func (n *Node) connectCluster(ctx context.Context) (err error) {
	cfg := n.cfg
	opts := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				n.log.Warn("lost the NATS connection; appends fail closed until it is back", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { n.log.Info("NATS connection back", "url", c.ConnectedUrlRedacted()) })}
	url := strings.Join(cfg.URLs, ",")
	if cfg.Embed != nil {
		emb := *cfg.Embed
		if emb.StoreDir == "" {
			return errors.New("the embedded NATS server needs a store directory")
		}
		if n.emb, err = startEmbedded(emb, cfg.Node, n.log.With("component", "nats"), 10*time.Second); err != nil {
			return err
		}
		opts = append(opts, nats.InProcessServer(n.emb.ns))
		url = n.emb.clientURL()
		n.log.Info("embedded NATS server running", "client", url, "cluster", n.emb.clusterAddr(), "routes", strings.Join(emb.Routes, ","), "store", emb.StoreDir)
	}
	n.url, n.natsOpt = url, opts
	if n.nc, err = n.connect("hub"); err != nil {
		return err
	}
	if n.js, err = jetstream.New(n.nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	startCtx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	if err := n.ensureStream(startCtx); err != nil {
		return err
	}
	return n.agree(startCtx)
}

func (n *Node) join(ctx context.Context) (err error) {
	if got := n.store.LogID(); got != n.logID {
		return fmt.Errorf("the local ledger is log %q and the cluster's is %q: this ledger is not a replica of this cluster; start the node with an empty data directory, or point it at the right cluster", got, n.logID)
	}
	startCtx, cancel := context.WithTimeout(ctx, n.cfg.StartTimeout)
	defer cancel()
	if err := n.checkPrefix(startCtx); err != nil {
		return err
	}
	if n.reg, err = newRegistry(startCtx, n); err != nil {
		return err
	}
	if n.live, err = startLiveness(n); err != nil {
		return err
	}
	if n.repl, err = startReplicator(n); err != nil {
		return err
	}
	n.started.Store(n.repl)
	n.reg.following(n.repl)
	if n.pub, err = newPublisher(n); err != nil {
		return err
	}
	// Not startCtx: catching up a node that was down for millions of
	// events takes minutes. It gives up only when no record lands for
	// StartTimeout.
	if err := n.catchUp(ctx); err != nil {
		return err
	}
	n.bg.Add(1)
	go n.watchHealth()
	return nil
}

// streamSubject is the subject the events topic is published on.
const streamSubject = ledger.EventsTopic

// ensureStream creates the stream, or checks an existing one against the
// configuration, retrying while the JetStream cluster is still forming.
func (n *Node) ensureStream(ctx context.Context) error {
	want := jetstream.StreamConfig{
		Name:        n.cfg.Stream,
		Description: "sessionledger: the cluster's ordered log",
		Subjects:    []string{streamSubject},
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Duplicates:  2 * time.Minute,
	}
	var last error
	for attempt := 0; ; attempt++ {
		// Each try has a short deadline of its own: a request made before
		// the cluster has a meta leader gets no answer at all.
		try, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := n.ensureOnce(try, want)
		cancel()
		if err == nil {
			n.stream = s
			return nil
		}
		if errors.Is(err, errStreamMismatch) {
			return err
		}
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("NATS at %s has no JetStream: enable JetStream on the NATS servers (or use --embed-nats)", n.nc.ConnectedUrlRedacted())
		}
		last = err
		if attempt%10 == 0 {
			n.log.Info("waiting for the JetStream cluster to form", "stream", want.Name, "replicas", want.Replicas, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the stream %s is not available (%v) after waiting: are %d NATS servers with JetStream running and routed to each other? %w",
				want.Name, last, want.Replicas, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// errStreamMismatch wraps the refusal of an existing stream.
var errStreamMismatch = errors.New("stream settings differ")

// ensureOnce finds or creates the stream once.
func (n *Node) ensureOnce(ctx context.Context, want jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := n.js.Stream(ctx, want.Name)
	if err == nil {
		if err := checkStream(s.CachedInfo().Config, want); err != nil {
			return nil, fmt.Errorf("%w: %w", errStreamMismatch, err)
		}
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, err
	}
	s, err = n.js.CreateStream(ctx, want)
	if err != nil {
		return nil, err
	}
	n.log.Info("created the cluster's stream", "stream", want.Name, "replicas", want.Replicas)
	return s, nil
}

// checkStream refuses an existing stream whose settings contradict ours.
func checkStream(got, want jetstream.StreamConfig) error {
	var diffs []string
	if got.Replicas != want.Replicas {
		diffs = append(diffs, fmt.Sprintf("replicas %d (--replicas says %d)", got.Replicas, want.Replicas))
	}
	if got.Storage != want.Storage {
		diffs = append(diffs, fmt.Sprintf("storage %s (want file)", got.Storage))
	}
	if len(got.Subjects) != 1 || got.Subjects[0] != streamSubject {
		diffs = append(diffs, fmt.Sprintf("subjects %v (want [%s])", got.Subjects, streamSubject))
	}
	if got.Retention != jetstream.LimitsPolicy {
		diffs = append(diffs, fmt.Sprintf("retention %s (want limits)", got.Retention))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("the stream %s exists with settings hubd cannot use: %s; change the flags to match, or edit the stream (nats stream edit)",
			got.Name, strings.Join(diffs, ", "))
	}
	return nil
}

// checkPrefix checks that the local ledger is a prefix of the stream: a
// ledger with records the stream lacks (written in single-node mode, or
// of another stream) or whose newest record is another message than the
// stream's at that seq would make this replica differ from the others.
func (n *Node) checkPrefix(ctx context.Context) error {
	info, err := n.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("read the stream's state: %w", err)
	}
	st := info.State
	head := n.store.Head()
	if head.Seq > st.LastSeq {
		return fmt.Errorf("the local ledger holds %d records and the stream %s only %d: this ledger is not a replica of this stream (a single-node ledger, or another cluster's); start the node with an empty data directory, or point it at the right cluster",
			head.Seq, n.cfg.Stream, st.LastSeq)
	}
	if head.Seq+1 < st.FirstSeq {
		return fmt.Errorf("the stream %s starts at seq %d (older messages were removed by its limits) and the local ledger ends at %d: copy a backup of another node's ledger that reaches at least seq %d into the data directory, then start",
			n.cfg.Stream, st.FirstSeq, head.Seq, st.FirstSeq-1)
	}
	if head.Seq == 0 || head.Seq < st.FirstSeq {
		return nil
	}
	rec, err := n.store.Get(head.Seq)
	if err != nil {
		return err
	}
	msg, err := n.stream.GetMsg(ctx, head.Seq)
	if err != nil {
		return fmt.Errorf("read the stream at seq %d: %w", head.Seq, err)
	}
	if id := msg.Header.Get(wmnats.WatermillUUIDHdr); id != rec.UUID {
		return fmt.Errorf("the local ledger's record %d (message %s) is not the stream's (message %s): this replica diverged; move its data directory away and start empty to rebuild it from the stream",
			head.Seq, rec.UUID, id)
	}
	return nil
}

// catchUp waits until the replica holds what the stream held when it was
// asked, logging progress; it gives up when no record lands for
// StartTimeout (however long the whole catch-up takes) or ctx ends.
func (n *Node) catchUp(ctx context.Context) error {
	info, err := n.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("read the stream's state: %w", err)
	}
	target := info.State.LastSeq
	from := n.store.Head().Seq
	if from >= target {
		return nil
	}
	n.log.Info("catching the ledger up with the stream", "from", from, "to", target)
	begin := time.Now()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	last, progressed := from, time.Now()
	for {
		changed := n.store.Changed()
		head := n.store.Head().Seq
		if head > last {
			last, progressed = head, time.Now()
		} else if time.Since(progressed) > n.cfg.StartTimeout {
			return fmt.Errorf("catch up with the stream: at seq %d of %d, no record stored for %s", head, target, n.cfg.StartTimeout)
		}
		if head >= target {
			took := time.Since(begin)
			n.log.Info("ledger caught up with the stream", "head", head, "records", head-from, "took", took.Round(time.Millisecond),
				"per_second", int(float64(head-from)/max(took.Seconds(), 1e-3)))
			return nil
		}
		if err := n.repl.Err(); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-tick.C:
			n.log.Info("catching up", "head", head, "target", target)
		case <-ctx.Done():
			return fmt.Errorf("catch up with the stream: at seq %d of %d: %w", head, target, ctx.Err())
		}
	}
}

// connect opens a NATS connection for one of the node's parts.
func (n *Node) connect(part string, extra ...nats.Option) (*nats.Conn, error) {
	opts := append(append(slices.Clip(n.natsOpt), nats.Name("hubd "+n.cfg.Node+" "+part)), extra...)
	nc, err := nats.Connect(n.url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", n.url, err)
	}
	return nc, nil
}

// healthInterval is how often the node probes the stream.
const healthInterval = time.Second

// watchHealth asks the stream's leader for its state every healthInterval:
// without a quorum or a connection there is no answer, and Err says so
// until one comes.
func (n *Node) watchHealth() {
	defer n.bg.Done()
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), healthInterval)
		info, err := n.stream.Info(ctx)
		cancel()
		switch {
		case err != nil:
			err = fmt.Errorf("the stream %s does not answer (no NATS connection or no quorum): %w", n.cfg.Stream, err)
		default:
			err = quorum(info)
			n.noQuorum.Store(err != nil)
			if err == nil {
				err = n.refusal()
			}
			if err == nil {
				err = n.repl.Err()
			}
			if err == nil {
				err = n.following(info.State.LastSeq)
			}
		}
		n.healthMu.Lock()
		was := n.healthy
		n.healthy = err
		n.healthMu.Unlock()
		switch {
		case err != nil && was == nil:
			n.log.Error("the cluster's log is unavailable; appends fail closed", "err", err)
		case err == nil && was != nil:
			n.log.Info("the cluster's log is available again")
		}
		select {
		case <-t.C:
		case <-n.stop:
			return
		}
	}
}

// Replication watchdog: a replica that holds less than the stream and was
// seen at the same seq, with no message delivered and no commit running,
// by two probes restartAfter apart gets a new subscription; one whose head
// stays for behindFor makes the node report it is not following.
//
// restartAfter is about one health interval (less the ticker's jitter): a
// stalled replica subscribes again 1–2 s after the stream first held more
// than it. A consumer lost with a killed server stalls exactly the node
// that is about to record the dead node's sessions as lost (its appends
// wait for its replica); at 3 s that wait put the last end past 4 s after
// the kill (docs/performance.md, "Cluster part 2"). A healthy replica
// stores each commit in milliseconds, so a probe interval without
// progress while behind is already a stall; the first probe to see the
// replica behind and idle only starts the clock, so an append caught
// between the stream and the replica is not one, and a slow commit on a
// busy disk is not one either. A new subscription costs one consumer
// create.
//
// A subscription that does not help (its consumer is being created while
// JetStream elects a new meta leader) is replaced at most every
// restartAgainAfter.
const (
	restartAfter      = healthInterval * 3 / 4
	restartAgainAfter = 3 * time.Second
	behindFor         = 10 * time.Second
)

// following reports a replica that has not stored a record for behindFor
// while the stream held more than it (a consumer lost with its server and
// not yet replaced): this node would not apply what is recorded, so it
// must not serve. It subscribes the replicator again when the watchdog
// says (replicaWatch.probe).
func (n *Node) following(last uint64) error {
	head := n.store.Head().Seq
	restart, stuck, err := n.watch.probe(head, last, n.repl.working(restartAfter), time.Now())
	if restart {
		n.log.Warn("the replicator has not stored a record while the stream holds more; subscribing again", "head", head, "stream", last, "stuck", stuck.Round(time.Millisecond))
		if err := n.repl.restart(); err != nil {
			n.log.Error("subscribing again failed", "err", err)
		}
	}
	return err
}

// replicaWatch is the watchdog's memory between probes: the head it last
// saw, when that changed, and since when probes have seen the replica
// behind the stream with nothing happening (zero: they have not).
type replicaWatch struct {
	lastHead    uint64
	lastMoved   time.Time
	behindSince time.Time
	restarted   time.Time // the last time probe said to subscribe again
}

// probe takes one look at the replica's head against the stream's last
// seq at now; working says the subscription delivered a message within
// restartAfter or a commit is running (a commit slow on a busy disk is not
// a lost consumer). It says whether to subscribe again (and how long the
// replica was seen stuck), and returns an error once the head has not
// moved for behindFor while behind, working or not.
func (w *replicaWatch) probe(head, last uint64, working bool, now time.Time) (restart bool, stuck time.Duration, err error) {
	switch {
	case head >= last:
		w.lastHead, w.lastMoved, w.behindSince = head, now, time.Time{}
		return false, 0, nil
	case head != w.lastHead || w.lastMoved.IsZero():
		// Behind, but it moved since the last probe.
		w.lastHead, w.lastMoved, w.behindSince = head, now, now
		return false, 0, nil
	case working:
		w.behindSince = time.Time{} // not stuck: the next idle probe starts the clock
	case w.behindSince.IsZero():
		w.behindSince = now // the first probe to see it behind and idle, here
	}
	if !w.behindSince.IsZero() {
		if stuck = now.Sub(w.behindSince); stuck >= restartAfter && now.Sub(w.restarted) >= restartAgainAfter {
			restart, w.restarted = true, now
		}
	}
	if now.Sub(w.lastMoved) > behindFor {
		err = fmt.Errorf("this node's ledger has stayed at seq %d for %s while the stream holds %d: it does not follow the cluster's log", head, now.Sub(w.lastMoved).Round(time.Second), last)
	}
	return restart, stuck, err
}

// quorum reports why the stream cannot take appends as its Raft group
// describes itself: no leader, or fewer replicas in touch with the leader
// than a majority (a stale answer can still come from a server that lost
// its peers).
func quorum(info *jetstream.StreamInfo) error {
	c := info.Cluster
	if c == nil || info.Config.Replicas <= 1 {
		return nil
	}
	if c.Leader == "" {
		return fmt.Errorf("the stream %s has no leader (no quorum of its %d replicas)", info.Config.Name, info.Config.Replicas)
	}
	up := 1 // the leader
	for _, p := range c.Replicas {
		if !p.Offline && p.Active < 5*time.Second {
			up++
		}
	}
	if need := info.Config.Replicas/2 + 1; up < need {
		return fmt.Errorf("the stream %s reaches %d of its %d replicas; a quorum is %d", info.Config.Name, up, info.Config.Replicas, need)
	}
	return nil
}

// refusal reports why a publish now would not be acknowledged, known
// without sending anything, or nil: the stream's leader said at the last
// probe that it lacks a quorum, or this node's embedded server is routed
// to too few other servers for one. A publish sent then could still be
// kept by the leader and committed once the quorum is back, after its
// caller was told it failed; so the publisher sends nothing.
//
// The routes tell it at once when a server's process exits or is killed:
// its host closes the route's connections, while the leader counts a
// replica up until 5 s after it last heard it (quorum), and the probe asks
// once a second. A host that crashes, or a partition, leaves connections
// open (until the route's pings time out, minutes by default): the
// leader's count alone notices it.
func (n *Node) refusal() error {
	if n.noQuorum.Load() {
		return fmt.Errorf("the stream's leader reports no quorum (%v)", n.Err())
	}
	if n.emb != nil && n.cfg.Replicas > 1 {
		// Every server the stream needs for a quorum is this one or one
		// routed to it: a publish reaches the leader over one route, and
		// the leader its followers over theirs. Exact for 3 replicas; with
		// 5, a server routed only to a leader that reaches a quorum of its
		// own is refused all the same.
		if up, need := 1+n.emb.ns.NumRemotes(), n.cfg.Replicas/2+1; up < need {
			return fmt.Errorf("this node's NATS server is routed to %d other servers; the stream's %d replicas need %d for a quorum", up-1, n.cfg.Replicas, need)
		}
	}
	return nil
}

// Unsettled lists the messages whose publish this node answered "outcome
// unknown" (ledger.ErrOutcomeUnknown) and whose fate no later record has
// settled yet: each is logged when it is, as recorded after all (with its
// seq) or presumed not recorded (after SettleAfter).
func (n *Node) Unsettled() []string {
	if r := n.started.Load(); r != nil {
		return r.unsettled()
	}
	return nil
}

// PresumedWrong counts the messages this node presumed not recorded
// (replicator.settle) that the log recorded all the same: a SettleAfter
// too short for how long a stalled connection here delivers late, or a
// keyed event published again.
func (n *Node) PresumedWrong() uint64 {
	if r := n.started.Load(); r != nil {
		return r.presumedWrong.Load()
	}
	return 0
}

// Err reports why the node cannot append now (no connection, no quorum,
// a replicator that stopped), or nil. It recovers on its own.
func (n *Node) Err() error {
	n.healthMu.Lock()
	defer n.healthMu.Unlock()
	return n.healthy
}

// Publisher is where the hub records its events.
func (n *Node) Publisher() *Publisher { return n.pub }

// Lag is how many stream messages this replica has not stored yet, as of
// the last one it received (0 before Join started replicating). It may be
// called at any time, also while Join runs.
func (n *Node) Lag() uint64 {
	if r := n.started.Load(); r != nil {
		return r.lag.Load()
	}
	return 0
}

// Close leaves the cluster: it stops the replicator, the publisher, the
// NATS connection and the embedded server. It is idempotent and bounded
// by ctx.
func (n *Node) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		close(n.stop)
		done := make(chan struct{})
		go func() { n.bg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
		n.closeErr = n.release()
	})
	return n.closeErr
}

// release stops what Connect and Join started, in reverse, once.
func (n *Node) release() error {
	n.releaseOnce.Do(func() { n.releaseErr = n.doRelease() })
	return n.releaseErr
}

func (n *Node) doRelease() error {
	var errs []error
	if n.live != nil {
		n.live.close()
	}
	if n.reg != nil {
		n.reg.close()
	}
	if n.repl != nil {
		errs = append(errs, n.repl.close())
	}
	if n.pub != nil {
		errs = append(errs, n.pub.Close())
	}
	if n.nc != nil {
		n.nc.Close()
	}
	if n.emb != nil {
		n.emb.shutdown()
	}
	return errors.Join(errs...)
}

// wmLogger adapts slog for watermill, one level down: watermill logs
// every message at Info.
func wmLogger(log *slog.Logger) watermill.LoggerAdapter {
	return watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{
		slog.LevelInfo:  slog.LevelDebug,
		slog.LevelDebug: slog.LevelDebug - 4,
	})
}

// StoreDir is where hubd keeps the embedded server's files.
func StoreDir(data string) string { return filepath.Join(data, "nats") }
