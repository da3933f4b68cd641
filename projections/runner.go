package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// Config configures a Runner. Zero values take the defaults.
type Config struct {
	// Group is the watermill consumer group the Runner reads the events
	// topic as (default "projections").
	Group string
	// CheckpointEvery is how many applied records may pass between
	// checkpoints (default 10,000); CheckpointInterval bounds the time
	// (default 10s). A checkpoint is also written by Close.
	CheckpointEvery    uint64
	CheckpointInterval time.Duration
	// SnapshotEvery is the distance between the periodic snapshots kept for
	// time travel (default 100,000). Negative values are not possible; set
	// NoSnapshots to keep none.
	SnapshotEvery uint64
	NoSnapshots   bool
	// OnChange, if set, is called with every change, in log order, from the
	// Runner's goroutine, before waiters of that seq are released. The hub
	// enforces pending ends from it. It must not block for long.
	OnChange func(Change)
	// Logger (default: slog.Default()).
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Group == "" {
		c.Group = "projections"
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = 10_000
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = 10 * time.Second
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = 100_000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Runner keeps a State up to date with a ledger: it loads the latest
// checkpoint, replays the tail, then follows the events topic through the
// ledger's watermill Subscriber as a consumer group. All methods are safe
// for concurrent use.
type Runner struct {
	store *ledger.Store
	cfg   Config

	mu sync.RWMutex // guards st
	st *State

	applied  atomic.Uint64
	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced after every apply

	started   atomic.Bool
	closeOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{} // closed when the follow loop ends
	sub       *ledger.Subscriber
	errMu     sync.Mutex
	err       error

	persist   chan persistJob
	persistWG sync.WaitGroup
	lastCkpt  uint64
	ckptAt    time.Time

	startFrom, startReplayed uint64
}

// StartInfo says where Start began: the checkpoint's seq (0: none usable)
// and how many records it replayed from the log after it.
func (r *Runner) StartInfo() (checkpointSeq, replayed uint64) { return r.startFrom, r.startReplayed }

type persistJob struct {
	key   string
	seq   uint64 // the state's seq: the persister adds its record hash
	value []byte
}

// NewRunner returns a Runner over store. Call Start, and Close before
// closing the store.
func NewRunner(store *ledger.Store, cfg Config) *Runner {
	cfg.setDefaults()
	return &Runner{store: store, cfg: cfg, st: New(), notify: make(chan struct{}), done: make(chan struct{})}
}

// Start loads the checkpoint (rebuilding from the log when there is none or
// its format version differs), replays the records after it up to the head,
// and starts following the log. When it returns, every record appended
// before the call is applied. ctx bounds the start only; Close stops the
// Runner.
func (r *Runner) Start(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("projections: runner already started")
	}
	st, err := r.loadCheckpoint()
	if err != nil {
		return err
	}
	r.st = st
	r.applied.Store(st.Seq())
	r.lastCkpt, r.ckptAt = st.Seq(), time.Now()
	r.persist = make(chan persistJob, 8)
	r.persistWG.Add(1)
	go r.persistLoop()

	from := st.Seq()
	if err := r.catchUp(ctx, 0); err != nil {
		r.stopPersist()
		return err
	}
	r.startFrom, r.startReplayed = from, r.applied.Load()-from
	r.cfg.Logger.Info("projections caught up", "checkpoint_seq", from, "replayed", r.startReplayed, "live_sessions", st.Live())

	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.sub = ledger.NewSubscriber(r.store, ledger.SubscriberConfig{ConsumerGroup: r.cfg.Group, StartFrom: r.applied.Load() + 1})
	msgs, err := r.sub.Subscribe(runCtx, ledger.EventsTopic)
	if err != nil {
		cancel()
		r.stopPersist()
		return fmt.Errorf("projections: subscribe: %w", err)
	}
	go r.follow(runCtx, msgs)
	return nil
}

func (r *Runner) loadCheckpoint() (*State, error) {
	b, err := r.store.GetBlob(CheckpointKey)
	if err != nil {
		return nil, fmt.Errorf("projections: read checkpoint: %w", err)
	}
	if b == nil {
		return New(), nil
	}
	st, err := loadStored(r.store, b)
	if errors.Is(err, ErrBadSnapshot) {
		r.cfg.Logger.Warn("projections checkpoint unusable, rebuilding from the log", "err", err)
		return New(), nil
	}
	return st, err
}

// catchUp applies the records after the applied seq up to to (0: the head)
// straight from the log: much faster than message-at-a-time delivery.
//
// It reads a chunk, then applies it once the chunk's read transaction has
// ended: apply may wait for the persister (its queue is bounded), whose
// commit may wait for every read transaction to end (bbolt remaps the file
// when it outgrows its map), so applying inside the scan can deadlock.
func (r *Runner) catchUp(ctx context.Context, to uint64) error {
	if to == 0 {
		to = r.store.Head().Seq
	}
	buf := make([]*ledger.Record, 0, catchUpChunk)
	for next := r.applied.Load() + 1; next <= to; {
		buf = buf[:0]
		end := min(next+catchUpChunk-1, to)
		err := r.store.Scan(ctx, next, end, func(rec *ledger.Record) error {
			buf = append(buf, rec)
			return nil
		})
		if err != nil {
			return err
		}
		if len(buf) == 0 {
			return nil // the log ends before to
		}
		for _, rec := range buf {
			r.apply(rec)
		}
		next = buf[len(buf)-1].Seq + 1
	}
	return nil
}

// catchUpChunk is how many records catchUp reads before applying them.
const catchUpChunk = 1024

func (r *Runner) follow(ctx context.Context, msgs <-chan *message.Message) {
	defer close(r.done)
	tick := time.NewTicker(r.cfg.CheckpointInterval)
	defer tick.Stop()
	for {
		select {
		case msg, ok := <-msgs:
			if !ok {
				if ctx.Err() == nil {
					r.fail(errors.New("projections: ledger subscription ended"))
				}
				return
			}
			if err := r.handle(ctx, msg); err != nil {
				msg.Nack()
				r.fail(err)
				return
			}
			msg.Ack()
		case <-tick.C:
			if r.applied.Load() != r.lastCkpt {
				r.checkpoint()
			}
		case <-ctx.Done():
			return
		}
	}
}

func (r *Runner) handle(ctx context.Context, msg *message.Message) error {
	seq, err := strconv.ParseUint(msg.Metadata.Get(ledger.MetadataSeq), 10, 64)
	if err != nil {
		return fmt.Errorf("projections: message without a ledger seq: %w", err)
	}
	applied := r.applied.Load()
	if seq <= applied {
		return nil // already applied from the checkpoint or the catch-up
	}
	if seq > applied+1 {
		// Records of other topics (or ones before the group's offset) in
		// between: take them from the log so the state sees every seq.
		if err := r.catchUp(ctx, seq-1); err != nil {
			return err
		}
	}
	rec, err := recordFromMessage(seq, msg)
	if err != nil {
		return err
	}
	r.apply(rec)
	return nil
}

// recordFromMessage rebuilds the record a subscriber message carries.
func recordFromMessage(seq uint64, msg *message.Message) (*ledger.Record, error) {
	id, err := ulid.ParseStrict(msg.Metadata.Get(ledger.MetadataID))
	if err != nil {
		return nil, fmt.Errorf("projections: seq %d: bad ledger id: %w", seq, err)
	}
	t, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(ledger.MetadataTime))
	if err != nil {
		return nil, fmt.Errorf("projections: seq %d: bad ledger time: %w", seq, err)
	}
	ev := new(eventpb.Event)
	if err := proto.Unmarshal(msg.Payload, ev); err != nil {
		return nil, fmt.Errorf("projections: seq %d: %w", seq, err)
	}
	return &ledger.Record{Seq: seq, ID: id, Time: t.UTC(), Topic: ledger.EventsTopic, UUID: msg.UUID, Event: ev}, nil
}

func (r *Runner) apply(rec *ledger.Record) {
	r.mu.Lock()
	ch := r.st.Apply(rec)
	var snap []byte
	if !r.cfg.NoSnapshots && rec.Seq%r.cfg.SnapshotEvery == 0 {
		var err error
		if snap, err = r.st.MarshalBinary(); err != nil {
			r.cfg.Logger.Error("projections snapshot encode failed", "seq", rec.Seq, "err", err)
		}
	}
	r.mu.Unlock()
	if snap != nil {
		r.persist <- persistJob{key: SnapshotKey(rec.Seq), seq: rec.Seq, value: snap}
	}
	if r.cfg.OnChange != nil {
		r.cfg.OnChange(ch)
	}
	r.applied.Store(rec.Seq)
	r.notifyMu.Lock()
	close(r.notify)
	r.notify = make(chan struct{})
	r.notifyMu.Unlock()
	if rec.Seq-r.lastCkpt >= r.cfg.CheckpointEvery {
		r.checkpoint()
	}
}

// checkpoint hands the current state to the persister.
func (r *Runner) checkpoint() {
	r.mu.RLock()
	b, err := r.st.MarshalBinary()
	seq := r.st.Seq()
	r.mu.RUnlock()
	if err != nil {
		r.cfg.Logger.Error("projections checkpoint encode failed", "err", err)
		return
	}
	r.lastCkpt, r.ckptAt = seq, time.Now()
	r.persist <- persistJob{key: CheckpointKey, seq: seq, value: b}
}

// persistLoop writes snapshots and checkpoints off the apply path: a
// durable write takes a commit, and enforcement must not wait for it.
func (r *Runner) persistLoop() {
	defer r.persistWG.Done()
	for job := range r.persist {
		b, err := stampHash(r.store, job.seq, job.value)
		if err == nil {
			err = r.store.PutBlob(context.Background(), job.key, b)
		}
		if err != nil {
			r.cfg.Logger.Error("projections checkpoint write failed", "key", job.key, "err", err)
		}
	}
}

func (r *Runner) stopPersist() {
	close(r.persist)
	r.persistWG.Wait()
}

func (r *Runner) fail(err error) {
	r.errMu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.errMu.Unlock()
	r.cfg.Logger.Error("projections runner stopped", "err", err)
}

// Err returns why the Runner stopped following the log, if it did.
func (r *Runner) Err() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.err
}

// Applied is the last applied seq.
func (r *Runner) Applied() uint64 { return r.applied.Load() }

// WaitApplied returns once the record seq is applied (and its change
// handed to OnChange), or when ctx ends or the Runner stops.
func (r *Runner) WaitApplied(ctx context.Context, seq uint64) error {
	if !r.started.Load() {
		return ErrNotStarted
	}
	for {
		r.notifyMu.Lock()
		ch := r.notify
		r.notifyMu.Unlock()
		if r.applied.Load() >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-r.done:
			if r.applied.Load() >= seq {
				return nil
			}
			if err := r.Err(); err != nil {
				return err
			}
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("wait for seq %d: %w", seq, ctx.Err())
		}
	}
}

// Read calls fn with the current state under a read lock. fn must not keep
// the state or call back into the Runner.
func (r *Runner) Read(fn func(*State)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	fn(r.st)
}

// Rebuild replays the whole log into a fresh state and swaps it in: a full
// rebuild on demand. The Runner keeps serving the old state meanwhile.
func (r *Runner) Rebuild(ctx context.Context) error {
	fresh := New()
	if err := Replay(ctx, r.store, fresh, r.applied.Load(), nil); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := Replay(ctx, r.store, fresh, r.st.Seq(), nil); err != nil {
		return err
	}
	r.st = fresh
	return nil
}

// Close stops following the log, writes a final checkpoint and waits for
// the pending snapshot writes. It is idempotent. Close the Runner before
// the ledger.
func (r *Runner) Close() error {
	if !r.started.Load() || r.cancel == nil {
		return nil
	}
	r.closeOnce.Do(func() {
		r.cancel()
		r.sub.Close()
		<-r.done
		if !r.store.Closed() && r.applied.Load() != r.lastCkpt {
			r.checkpoint()
		}
		r.stopPersist()
	})
	return nil
}
