package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sessionledger/sessionledger/ledger"
)

// Config configures a Runner. Zero values take the defaults.
type Config struct {
	// Group is the watermill consumer group the Runner reads the events
	// topic as (default "projections").
	Group string
	// CheckpointEvery is how many applied records may pass between
	// checkpoints (default 10,000); CheckpointInterval bounds the time
	// (default 10s). A checkpoint is also written at the end of Start (if
	// it replayed anything), by Rebuild and by Close.
	CheckpointEvery    uint64
	CheckpointInterval time.Duration
	// SnapshotEvery is the distance between the periodic snapshots kept for
	// time travel (default 100,000). Negative values are not possible; set
	// NoSnapshots to keep none.
	SnapshotEvery uint64
	NoSnapshots   bool
	// CloseTimeout bounds how long Close waits for the final checkpoint and
	// the snapshot writes still queued (default 10s).
	CloseTimeout time.Duration
	// StallAfter is how long a durable record may wait to be applied before
	// Stalled reports the Runner behind the log (default 10s), while more
	// than StallLag records wait (default 0: any).
	StallAfter time.Duration
	StallLag   uint64
	// OnChange, if set, is called with every change the Runner applies
	// after Start's replay, in log order, before waiters of that seq are
	// released; calls never overlap. The hub enforces pending ends from it.
	// It must not block for long, nor call back into the Runner. The
	// records Start replays (the log as it was when Start began) are
	// history and are not passed to it. Rebuild adds one call of its own
	// (Change.Rebuilt) for pending ends the rebuilt state uncovered.
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
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = 10 * time.Second
	}
	if c.StallAfter <= 0 {
		c.StallAfter = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// phase is where a Runner is in its life.
type phase int

const (
	phaseNew      phase = iota // NewRunner returned it
	phaseStarting              // Start is running
	phaseRunning               // following the log
	phaseStopped               // closed, or Start failed: for good
)

// Runner keeps a State up to date with a ledger: it loads the latest
// checkpoint, replays the tail, then follows the events topic through the
// ledger's watermill Subscriber as a consumer group. All methods are safe
// for concurrent use. A Runner starts once; after Close or a failed Start,
// make a new one.
type Runner struct {
	store *ledger.Store
	cfg   Config

	mu sync.RWMutex // guards st (the pointer and the state)
	st *State

	applied  atomic.Uint64
	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced whenever applied moves

	lifeMu  sync.Mutex // guards phase, cancel, sub and the start info
	phase   phase
	cancel  context.CancelFunc // ends the follow loop's subscription
	sub     *ledger.Subscriber
	quit    chan struct{} // closed when Close begins: interrupts Start and Rebuild
	started chan struct{} // closed when Start returns
	done    chan struct{} // closed once the Runner applies no more records
	endOnce sync.Once

	closeOnce sync.Once
	closeErr  error

	startFrom, startReplayed uint64

	errMu sync.Mutex
	err   error

	persist *persister

	// lastCkpt is the seq of the last checkpoint handed to the persister.
	// Only the goroutine that applies records touches it: Start's, then the
	// follow loop's, then Close's once the loop has ended.
	lastCkpt uint64

	want      atomic.Uint64    // the highest seq a waiter found on another topic
	wake      chan struct{}    // tells the follow loop to look at want
	rebuilds  chan *rebuildReq // Rebuild hands the rebuilt state to the follow loop
	ckpts     chan chan error  // Checkpoint asks the follow loop for one
	rebuildMu sync.Mutex       // one Rebuild at a time

	// aheadOfHead counts what Start found stored past the head of the log.
	aheadOfHead atomic.Uint64

	stallMu sync.Mutex
	// stallMark is the head Stalled saw when the Runner was last found
	// behind and past its previous mark, and when (see Stalled).
	stallMark struct {
		seq uint64
		at  time.Time
	}
}

// rebuildReq is a rebuilt state for the follow loop to swap in; done gets
// the result, once the checkpoint of the rebuilt state is durable.
type rebuildReq struct {
	st   *State
	done chan error
}

// NewRunner returns a Runner over store. Call Start, and Close before
// closing the store.
func NewRunner(store *ledger.Store, cfg Config) *Runner {
	cfg.setDefaults()
	return &Runner{
		store: store, cfg: cfg, st: New(),
		notify: make(chan struct{}), quit: make(chan struct{}), started: make(chan struct{}), done: make(chan struct{}),
		persist: newPersister(store, cfg.Logger), wake: make(chan struct{}, 1), rebuilds: make(chan *rebuildReq),
		ckpts: make(chan chan error),
	}
}

// StartInfo says where Start began: the checkpoint's seq (0: none usable)
// and how many records it replayed from the log after it.
func (r *Runner) StartInfo() (checkpointSeq, replayed uint64) {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	return r.startFrom, r.startReplayed
}

// Start loads the checkpoint (rebuilding from the log when there is none
// usable), replays the records after it up to the head with the fast
// decoder (storing the periodic snapshots it passes), and starts following
// the log. When it returns nil, every record appended before the call is
// applied. ctx bounds the start only; Close stops the Runner, and
// interrupts a Start in progress (which then returns ErrClosed). A Runner
// whose Start failed stays stopped: WaitApplied and Err report why.
func (r *Runner) Start(ctx context.Context) error {
	r.lifeMu.Lock()
	switch r.phase {
	case phaseNew:
	case phaseStopped:
		r.lifeMu.Unlock()
		if r.closing() {
			return ErrClosed
		}
		return ErrStarted
	default:
		r.lifeMu.Unlock()
		return ErrStarted
	}
	r.phase = phaseStarting
	r.lifeMu.Unlock()
	defer close(r.started)

	ctx, cancel := r.stoppable(ctx)
	defer cancel()
	err := r.start(ctx)
	if err == nil {
		return nil
	}
	if r.closing() {
		err = ErrClosed
	}
	stopCtx, cancelStop := context.WithTimeout(context.Background(), r.cfg.CloseTimeout)
	defer cancelStop()
	if perr := r.persist.stop(stopCtx); perr != nil {
		r.cfg.Logger.Warn("projections: checkpoint after a failed start", "err", perr)
	}
	r.setErr(fmt.Errorf("projections: start: %w", err))
	r.lifeMu.Lock()
	r.phase = phaseStopped
	r.lifeMu.Unlock()
	r.end()
	return err
}

func (r *Runner) start(ctx context.Context) error {
	// What is stored past the head (a damaged or edited file, a truncated
	// tail) is reported, never waited for: a checkpoint there is not used,
	// and neither is a snapshot (each must match the log's record at its
	// seq); a consumer offset there is the ledger's to clamp.
	st, err := r.loadCheckpoint(r.store.Head().Seq)
	if err != nil {
		return err
	}
	if err := r.reportSnapshotsAhead(r.store.Head().Seq); err != nil {
		return err
	}
	r.lastCkpt = st.Seq()
	r.persist.checkpointed.Store(st.Seq())
	r.persist.start()

	from, head := st.Seq(), r.store.Head().Seq
	var also []uint64
	if from == 0 {
		// A full rebuild: look again at every stored snapshot on the way
		// (another version's, or ones a checkpoint-less crash left).
		if also, err = snapshotSeqs(r.store); err != nil {
			return err
		}
	}
	if err := r.replay(ctx, st, head, also, false); err != nil {
		return err
	}
	r.mu.Lock()
	r.st = st
	r.mu.Unlock()
	r.advance(st.Seq())
	r.lifeMu.Lock()
	r.startFrom, r.startReplayed = from, st.Seq()-from
	r.lifeMu.Unlock()
	if st.Seq() != r.lastCkpt {
		r.checkpoint(nil)
	}
	r.cfg.Logger.Info("projections caught up", "checkpoint_seq", from, "replayed", st.Seq()-from, "live_sessions", st.Live())

	runCtx, cancel := context.WithCancel(context.Background())
	sub := ledger.NewSubscriber(r.store, ledger.SubscriberConfig{ConsumerGroup: r.cfg.Group, StartFrom: st.Seq() + 1})
	msgs, err := sub.Subscribe(runCtx, ledger.EventsTopic)
	if err != nil {
		cancel()
		_ = sub.Close()
		return fmt.Errorf("subscribe: %w", err)
	}
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	if r.closing() {
		cancel()
		_ = sub.Close()
		return ErrClosed
	}
	r.cancel, r.sub, r.phase = cancel, sub, phaseRunning
	go r.follow(runCtx, msgs)
	return nil
}

// stoppable returns ctx, also cancelled when Close begins.
func (r *Runner) stoppable(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-r.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// closing reports whether Close has begun.
func (r *Runner) closing() bool {
	select {
	case <-r.quit:
		return true
	default:
		return false
	}
}

// end marks that no more records will be applied.
func (r *Runner) end() { r.endOnce.Do(func() { close(r.done) }) }

func (r *Runner) loadCheckpoint(head uint64) (*State, error) {
	b, err := r.store.GetBlob(CheckpointKey)
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	if b == nil {
		return New(), nil
	}
	if _, at, ok := snapshotHeader(b); ok && at > head {
		r.aheadOfHead.Add(1)
		r.cfg.Logger.Warn("projections checkpoint is past the head of the log (a damaged, edited or truncated ledger); rebuilding from the log",
			"checkpoint_seq", at, "head", head)
		return New(), nil
	}
	st, err := loadStored(r.store, b)
	if errors.Is(err, ErrBadSnapshot) {
		r.cfg.Logger.Warn("projections checkpoint unusable, rebuilding from the log", "err", err)
		return New(), nil
	}
	return st, err
}

// replay applies the records after st.Seq() up to to onto st with
// Replay's fast decoder, and hands the persister a snapshot at every
// multiple of SnapshotEvery and every seq in also that it passes (none with
// NoSnapshots). Without overwrite, a usable snapshot already stored is left
// as it is. st must be private to the caller or the caller must be the
// follow loop.
func (r *Runner) replay(ctx context.Context, st *State, to uint64, also []uint64, overwrite bool) error {
	if to <= st.Seq() {
		// Nothing to do; and Replay would read to == 0 as "the head".
		return nil
	}
	for _, at := range r.snapshotPoints(st.Seq(), to, also) {
		if err := Replay(ctx, r.store, st, at, nil); err != nil {
			return err
		}
		if !overwrite && usableSnapshot(r.store, at) {
			continue
		}
		b, err := st.MarshalBinary()
		if err != nil {
			return err
		}
		r.persist.snapshot(at, b)
	}
	return Replay(ctx, r.store, st, to, nil)
}

// snapshotPoints returns the seqs in (from, to] where snapshots are kept:
// the multiples of SnapshotEvery and those in also, in order.
func (r *Runner) snapshotPoints(from, to uint64, also []uint64) []uint64 {
	if r.cfg.NoSnapshots || to <= from {
		return nil
	}
	var out []uint64
	for at := (from/r.cfg.SnapshotEvery + 1) * r.cfg.SnapshotEvery; at <= to && at > from; at += r.cfg.SnapshotEvery {
		out = append(out, at)
	}
	for _, at := range also {
		if at > from && at <= to {
			out = append(out, at)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// reportSnapshotsAhead logs and counts the periodic snapshots stored past
// head. They are never used (one is used only where the log's record at
// its seq has the hash it carries) and are replaced as the log passes the
// multiples of SnapshotEvery.
func (r *Runner) reportSnapshotsAhead(head uint64) error {
	var seqs []uint64
	upTo := SnapshotKey(math.MaxUint64)
	for {
		key, _, err := r.store.LastBlob(SnapshotPrefix, upTo)
		if err != nil {
			return fmt.Errorf("read snapshots: %w", err)
		}
		n, perr := strconv.ParseUint(strings.TrimPrefix(key, SnapshotPrefix), 10, 64)
		if key == "" || perr != nil || n <= head {
			break
		}
		seqs = append(seqs, n)
		upTo = SnapshotKey(n - 1)
	}
	if len(seqs) == 0 {
		return nil
	}
	r.aheadOfHead.Add(uint64(len(seqs)))
	slices.Reverse(seqs)
	r.cfg.Logger.Warn("projections snapshots are past the head of the log (a damaged, edited or truncated ledger); they are not used",
		"count", len(seqs), "first_seq", seqs[0], "last_seq", seqs[len(seqs)-1], "head", head)
	return nil
}

// snapshotSeqs returns the seqs of every stored periodic snapshot.
func snapshotSeqs(store *ledger.Store) ([]uint64, error) {
	var out []uint64
	upTo := SnapshotKey(math.MaxUint64)
	for {
		key, _, err := store.LastBlob(SnapshotPrefix, upTo)
		if err != nil || key == "" {
			return out, err
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(key, SnapshotPrefix), 10, 64)
		if err != nil || n == 0 {
			return out, nil
		}
		out = append(out, n)
		upTo = SnapshotKey(n - 1)
	}
}

// catchUp applies the records after the applied seq up to to straight
// from the log, fully decoded (OnChange gets each record). Scan runs its
// callback outside its read transactions, so applying may hand work to the
// persister, whose commit may have to grow bbolt's map and so wait for
// every reader.
func (r *Runner) catchUp(ctx context.Context, to uint64) error {
	next := r.applied.Load() + 1
	return r.store.Scan(ctx, next, to, func(rec *ledger.Record) error {
		if err := ledger.CheckNext(&next, rec.Seq); err != nil {
			return err
		}
		r.apply(rec)
		return nil
	})
}

func (r *Runner) follow(ctx context.Context, msgs <-chan *message.Message) {
	defer r.end()
	tick := time.NewTicker(r.cfg.CheckpointInterval)
	defer tick.Stop()
	stopped := func(err error) bool {
		if err != nil && ctx.Err() == nil { // Close is not a failure
			r.fail(err)
		}
		return err != nil
	}
	for {
		select {
		case msg, ok := <-msgs:
			if !ok {
				stopped(errors.New("projections: ledger subscription ended"))
				return
			}
			if err := r.handle(ctx, msg); err != nil {
				msg.Nack()
				stopped(err)
				return
			}
			msg.Ack()
		case <-r.wake:
			if stopped(r.serveWaiters(ctx)) {
				return
			}
		case req := <-r.rebuilds:
			r.swap(ctx, req)
		case done := <-r.ckpts:
			r.checkpoint(done)
		case <-tick.C:
			// Against the last checkpoint written, not handed over: a
			// failed write is tried again even while the log is idle.
			if r.applied.Load() != r.persist.checkpointed.Load() {
				r.checkpoint(nil)
			}
		case <-ctx.Done():
			return
		}
	}
}

func (r *Runner) handle(ctx context.Context, msg *message.Message) error {
	rec, err := ledger.RecordFromMessage(ledger.EventsTopic, msg)
	if err != nil {
		return fmt.Errorf("projections: %w", err)
	}
	applied := r.applied.Load()
	if rec.Seq <= applied {
		return nil // already applied from the checkpoint or the log
	}
	if rec.Seq > applied+1 {
		// Records of other topics (or ones before the group's offset) in
		// between: take them from the log so the state sees every seq.
		if err := r.catchUp(ctx, rec.Seq-1); err != nil {
			return err
		}
	}
	r.apply(rec)
	return nil
}

// serveWaiters reads the log up to the seq a WaitApplied caller asked
// for: a record of another topic is never delivered by the subscription,
// and at the tail of the log nothing may come after it to fill the gap.
func (r *Runner) serveWaiters(ctx context.Context) error {
	want := min(r.want.Load(), r.store.Head().Seq)
	if want <= r.applied.Load() {
		return nil
	}
	return r.catchUp(ctx, want)
}

// apply applies rec (the follow loop's records), tells OnChange and the
// waiters, then stores what is due. Readers wait only for Apply itself:
// encoding a snapshot or checkpoint takes the read lock.
func (r *Runner) apply(rec *ledger.Record) {
	r.mu.Lock()
	ch := r.st.Apply(rec)
	r.mu.Unlock()
	if r.cfg.OnChange != nil {
		r.cfg.OnChange(ch)
	}
	r.advance(rec.Seq)
	if !r.cfg.NoSnapshots && rec.Seq%r.cfg.SnapshotEvery == 0 {
		r.mu.RLock()
		b, err := r.st.MarshalBinary()
		r.mu.RUnlock()
		if err != nil {
			r.cfg.Logger.Error("projections snapshot encode failed", "seq", rec.Seq, "err", err)
		} else {
			r.persist.snapshot(rec.Seq, b)
		}
	}
	if rec.Seq-r.lastCkpt >= r.cfg.CheckpointEvery {
		r.checkpoint(nil)
	}
}

// advance publishes seq as applied and wakes the waiters.
func (r *Runner) advance(seq uint64) {
	r.applied.Store(seq)
	r.notifyMu.Lock()
	close(r.notify)
	r.notify = make(chan struct{})
	r.notifyMu.Unlock()
}

// checkpoint hands the current state to the persister; done, if not nil,
// gets the write's result.
func (r *Runner) checkpoint(done chan<- error) {
	r.mu.RLock()
	b, err := r.st.MarshalBinary()
	seq := r.st.Seq()
	r.mu.RUnlock()
	if err != nil {
		r.cfg.Logger.Error("projections checkpoint encode failed", "err", err)
		if done != nil {
			done <- err
		}
		return
	}
	r.lastCkpt = seq
	r.persist.checkpoint(seq, b, done)
}

func (r *Runner) fail(err error) {
	r.setErr(err)
	r.cfg.Logger.Error("projections runner stopped", "err", err)
}

func (r *Runner) setErr(err error) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

// Err returns why the Runner stopped applying the log: the error of a
// failed Start, the one that stopped it following (a subscription or log
// read that failed), or ErrClosed after Close. It is nil while the Runner is
// new, starting or following the log: a health check reports it.
func (r *Runner) Err() error {
	r.errMu.Lock()
	err := r.err
	r.errMu.Unlock()
	if err == nil && r.closing() {
		return ErrClosed
	}
	return err
}

// Applied is the last applied seq.
func (r *Runner) Applied() uint64 { return r.applied.Load() }

// Counters returns the reducer's counters for the state the Runner holds:
// the anomalies it met in the log (see Counters), for metrics.
func (r *Runner) Counters() Counters {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.st.Counters()
}

// RunnerStats are a Runner's own figures, for metrics.
type RunnerStats struct {
	// Applied is the last applied seq.
	Applied uint64
	// Checkpointed is the seq of the last durable checkpoint: the one Start
	// loaded until a newer one is written (0: none).
	Checkpointed uint64
	// PersistFailures counts checkpoint and snapshot writes that failed
	// (each is logged; the next checkpoint tries again).
	PersistFailures uint64
	// AheadOfHead counts the checkpoint and periodic snapshots Start found
	// stored past the head of the log (a damaged, edited or truncated
	// ledger). Each was logged with its seq and the head, and none is used.
	AheadOfHead uint64
}

// Stats returns the Runner's figures.
func (r *Runner) Stats() RunnerStats {
	return RunnerStats{Applied: r.applied.Load(), Checkpointed: r.persist.checkpointed.Load(), PersistFailures: r.persist.failures.Load(),
		AheadOfHead: r.aheadOfHead.Load()}
}

// Stalled returns ErrStalled (wrapped, with the seqs) while the Runner is
// behind the log: more than StallLag records wait to be applied, and a
// record that was durable StallAfter ago still is not applied. It is nil
// otherwise, also before Start has finished and after the Runner stopped
// (Err says why). A Runner that keeps up under load is not stalled however
// far it trails: it passes each head it was found behind within
// StallAfter.
//
// Stalled judges from its own calls: it remembers the head the first call
// that found the Runner behind saw, and reports a stall once the Runner
// has not passed it StallAfter later. Call it periodically (the hub's
// health check does, every second). A record of another topic at the head,
// which the subscription never delivers, is read from the log when it is
// found waiting.
func (r *Runner) Stalled() error {
	r.lifeMu.Lock()
	ph := r.phase
	r.lifeMu.Unlock()
	if ph != phaseRunning || r.Err() != nil {
		return nil
	}
	r.stallMu.Lock()
	defer r.stallMu.Unlock()
	now := time.Now()
	applied, head := r.applied.Load(), r.store.Head().Seq
	if head <= applied+r.cfg.StallLag {
		r.stallMark.seq, r.stallMark.at = 0, time.Time{}
		return nil
	}
	r.askIfOtherTopic(head)
	if r.stallMark.at.IsZero() || applied >= r.stallMark.seq {
		r.stallMark.seq, r.stallMark.at = head, now
		return nil
	}
	if waited := now.Sub(r.stallMark.at); waited >= r.cfg.StallAfter {
		return fmt.Errorf("%w: applied seq %d, head seq %d: seq %d has waited over %s to be applied",
			ErrStalled, applied, head, r.stallMark.seq, waited.Truncate(time.Millisecond))
	}
	return nil
}

// WaitApplied returns once the record seq is applied (and, for a record
// after Start's replay, its change handed to OnChange), or when ctx ends or
// the Runner stops. seq may be a record of another topic (it is read from
// the log: the subscription never delivers it) or one not yet appended.
func (r *Runner) WaitApplied(ctx context.Context, seq uint64) error {
	r.lifeMu.Lock()
	ph := r.phase
	r.lifeMu.Unlock()
	if ph == phaseNew {
		return ErrNotStarted
	}
	asked := false
	for {
		r.notifyMu.Lock()
		ch := r.notify
		r.notifyMu.Unlock()
		if r.applied.Load() >= seq {
			return nil
		}
		var grew <-chan struct{}
		changed := r.store.Changed() // before Head: a commit in between still wakes us
		if seq > r.store.Head().Seq {
			grew = changed
		} else if !asked {
			asked = true
			r.askIfOtherTopic(seq)
		}
		select {
		case <-ch:
		case <-grew:
		case <-r.done:
			if r.applied.Load() >= seq {
				return nil
			}
			return r.Err()
		case <-ctx.Done():
			return fmt.Errorf("wait for seq %d: %w", seq, ctx.Err())
		}
	}
}

// askIfOtherTopic asks the follow loop to read the log up to seq if the
// record there is not on the events topic.
func (r *Runner) askIfOtherTopic(seq uint64) {
	rec, err := r.store.Get(seq)
	if err != nil || rec.Topic == ledger.EventsTopic {
		return // the subscription delivers it (or the log fails, and so will the loop)
	}
	for {
		w := r.want.Load()
		if w >= seq || r.want.CompareAndSwap(w, seq) {
			break
		}
	}
	select {
	case r.wake <- struct{}{}:
	default:
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
// rebuild on demand, for a state suspected wrong. The Runner keeps applying
// to the old state meanwhile; the follow loop then brings the fresh one up
// to date, swaps it in, hands OnChange one change (Rebuilt) with the
// pending ends the old state lacked, and checkpoints it. Every periodic
// snapshot up to the head is rewritten from the fresh state. Rebuild
// returns once the new checkpoint is durable.
func (r *Runner) Rebuild(ctx context.Context) error {
	r.lifeMu.Lock()
	ph := r.phase
	r.lifeMu.Unlock()
	switch ph {
	case phaseNew, phaseStarting:
		return ErrNotStarted
	case phaseStopped:
		return r.Err()
	}
	r.rebuildMu.Lock()
	defer r.rebuildMu.Unlock()
	ctx, cancel := r.stoppable(ctx)
	defer cancel()
	fresh := New()
	also, err := snapshotSeqs(r.store)
	if err == nil {
		err = r.replay(ctx, fresh, r.applied.Load(), also, true)
	}
	if err != nil {
		if r.closing() {
			return ErrClosed
		}
		return fmt.Errorf("projections: rebuild: %w", err)
	}
	req := &rebuildReq{st: fresh, done: make(chan error, 1)}
	select {
	case r.rebuilds <- req:
	case <-r.done:
		return r.Err()
	case <-ctx.Done():
		return r.rebuildCancelled(ctx)
	}
	select {
	case err := <-req.done:
		if err != nil {
			return fmt.Errorf("projections: rebuild: %w", err)
		}
		return nil
	case <-ctx.Done():
		return r.rebuildCancelled(ctx)
	}
}

// Checkpoint writes a checkpoint of the state as applied now and returns
// once it is durable (or ctx ends). A hot backup (hubd's Admin.Backup) takes
// one first, so the copy carries a checkpoint near its head and a hubd
// restored from it replays little.
func (r *Runner) Checkpoint(ctx context.Context) error {
	r.lifeMu.Lock()
	ph := r.phase
	r.lifeMu.Unlock()
	switch ph {
	case phaseNew, phaseStarting:
		return ErrNotStarted
	case phaseStopped:
		return r.Err()
	}
	done := make(chan error, 1)
	select {
	case r.ckpts <- done:
	case <-r.done:
		return r.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rebuildCancelled is Rebuild's error when its context ended: ErrClosed
// if Close ended it.
func (r *Runner) rebuildCancelled(ctx context.Context) error {
	if r.closing() {
		return ErrClosed
	}
	return fmt.Errorf("projections: rebuild: %w", ctx.Err())
}

// swap brings a rebuilt state up to the applied seq and swaps it in (the
// follow loop's half of Rebuild).
func (r *Runner) swap(ctx context.Context, req *rebuildReq) {
	fresh := req.st
	// The records applied since the rebuild read the log; the snapshots on
	// the way replace the ones the old state wrote meanwhile.
	applied := r.applied.Load()
	if err := r.replay(ctx, fresh, applied, nil, true); err != nil {
		req.done <- err
		return
	}
	if fresh.Seq() != applied {
		req.done <- fmt.Errorf("rebuilt state at seq %d, the runner at %d", fresh.Seq(), applied)
		return
	}
	r.mu.Lock()
	old := r.st
	r.st = fresh
	r.mu.Unlock()
	// Only this goroutine changes a state, so old can be read unlocked.
	var uncovered []PendingEnd
	for _, p := range fresh.PendingEnds() {
		if _, ok := old.pending[p.Session]; !ok {
			uncovered = append(uncovered, p)
		}
	}
	r.cfg.Logger.Info("projections rebuilt", "seq", fresh.Seq(), "live_sessions", fresh.Live(), "uncovered_pending_ends", len(uncovered))
	if len(uncovered) > 0 && r.cfg.OnChange != nil {
		r.cfg.OnChange(Change{Seq: fresh.Seq(), Pending: uncovered, Rebuilt: true})
	}
	r.checkpoint(req.done)
}

// Close stops following the log, writes a final checkpoint and waits for
// the writes still queued, at most CloseTimeout; it returns the final
// checkpoint's error, or the timeout's. It interrupts a Start or Rebuild
// in progress. It is idempotent. Close the Runner before the ledger.
func (r *Runner) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.CloseTimeout)
	defer cancel()
	return r.Shutdown(ctx)
}

// Shutdown is Close with the wait for the final writes bounded by ctx
// instead of CloseTimeout. The first Close or Shutdown decides; later
// calls return its result.
func (r *Runner) Shutdown(ctx context.Context) error {
	r.closeOnce.Do(func() { r.closeErr = r.close(ctx) })
	return r.closeErr
}

func (r *Runner) close(ctx context.Context) error {
	r.lifeMu.Lock()
	close(r.quit)
	ph := r.phase
	if ph == phaseNew {
		r.phase = phaseStopped
		r.lifeMu.Unlock()
		r.end()
		return nil
	}
	r.lifeMu.Unlock()
	if ph == phaseStarting {
		<-r.started // Start sees closing, cleans up and stops
	}
	r.lifeMu.Lock()
	ph, cancel, sub := r.phase, r.cancel, r.sub
	r.phase = phaseStopped
	r.lifeMu.Unlock()
	if ph != phaseRunning {
		return nil // a failed Start cleaned up
	}
	cancel()
	_ = sub.Close()
	<-r.done
	if !r.store.Closed() && r.applied.Load() != r.persist.checkpointed.Load() {
		r.checkpoint(nil)
	}
	return r.persist.stop(ctx)
}
