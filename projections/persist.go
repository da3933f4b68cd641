package projections

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/sessionledger/sessionledger/ledger"
)

// persister writes the Runner's snapshots and checkpoints on its own
// goroutine: a durable write takes a commit, and applying records (and so
// enforcement) must never wait for one. Handing it work never blocks:
// periodic snapshots queue in order (one per SnapshotEvery records, so the
// queue stays short unless the disk is far slower than the log), and a
// checkpoint replaces an older one that was not written yet.
type persister struct {
	store *ledger.Store
	log   *slog.Logger

	mu       sync.Mutex
	snaps    []persistJob
	ckpt     *persistJob
	waiters  []chan<- error // told the result of the next checkpoint write
	started  bool
	stopping bool  // write what is queued, then end
	abandon  bool  // end after the write in progress (set with stopping)
	ended    bool  // the goroutine has ended (set with stopping)
	ckptErr  error // the last checkpoint write's result
	wake     chan struct{}
	done     chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc

	failures     atomic.Uint64
	checkpointed atomic.Uint64
}

// persistJob is a state encoded by MarshalBinary at seq, to be stored
// under key once the persister has added the record hash at seq.
type persistJob struct {
	key   string
	seq   uint64
	value []byte
}

func newPersister(store *ledger.Store, log *slog.Logger) *persister {
	ctx, cancel := context.WithCancel(context.Background())
	return &persister{store: store, log: log, wake: make(chan struct{}, 1), done: make(chan struct{}), ctx: ctx, cancel: cancel}
}

// start starts the writing goroutine; stop ends it.
func (p *persister) start() {
	p.mu.Lock()
	p.started = true
	p.mu.Unlock()
	go p.run()
}

func (p *persister) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// snapshot queues the periodic snapshot of a state at seq.
func (p *persister) snapshot(seq uint64, b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		p.log.Warn("projections snapshot dropped: the runner is closing", "seq", seq)
		return
	}
	p.snaps = append(p.snaps, persistJob{key: SnapshotKey(seq), seq: seq, value: b})
	p.signal()
}

// checkpoint queues the checkpoint of a state at seq, replacing one not
// yet written. done, if not nil, gets the result of the write that stores
// this checkpoint or a later one.
func (p *persister) checkpoint(seq uint64, b []byte, done chan<- error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended || !p.started {
		if done != nil {
			done <- ErrClosed
		}
		return
	}
	p.ckpt = &persistJob{key: CheckpointKey, seq: seq, value: b}
	if done != nil {
		p.waiters = append(p.waiters, done)
	}
	p.signal()
}

func (p *persister) run() {
	defer close(p.done)
	for {
		p.mu.Lock()
		var job persistJob
		var waiters []chan<- error
		have := !p.abandon
		switch {
		case !have:
		case len(p.snaps) > 0:
			job = p.snaps[0]
			p.snaps[0] = persistJob{}
			p.snaps = p.snaps[1:]
		case p.ckpt != nil:
			job, waiters = *p.ckpt, p.waiters
			p.ckpt, p.waiters = nil, nil
		default:
			have = false
		}
		if !have && p.stopping {
			p.ended = true
			for _, w := range p.waiters {
				w <- ErrClosed
			}
			p.waiters, p.snaps, p.ckpt = nil, nil, nil
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		if !have {
			<-p.wake
			continue
		}
		err := p.write(job)
		if job.key == CheckpointKey {
			p.mu.Lock()
			p.ckptErr = err
			p.mu.Unlock()
			if err == nil {
				p.checkpointed.Store(job.seq)
			}
		}
		for _, w := range waiters {
			w <- err
		}
	}
}

func (p *persister) write(job persistJob) error {
	b, err := stampHash(p.store, job.seq, job.value)
	if err == nil {
		err = p.store.PutBlob(p.ctx, job.key, b)
	}
	if err != nil {
		p.failures.Add(1)
		p.log.Error("projections checkpoint write failed", "key", job.key, "seq", job.seq, "err", err)
	}
	return err
}

// stop writes what is queued and ends the goroutine, waiting until ctx
// ends at most. It returns the last checkpoint write's error, or why it gave
// up waiting: then the write in progress (the ledger's commit cannot be
// called back) ends on its own, and nothing queued after it is written.
func (p *persister) stop(ctx context.Context) error {
	p.mu.Lock()
	if !p.started {
		p.mu.Unlock()
		return nil
	}
	p.stopping = true
	p.mu.Unlock()
	p.signal()
	select {
	case <-p.done:
	case <-ctx.Done():
		p.mu.Lock()
		p.abandon = true
		p.mu.Unlock()
		p.cancel()
		p.signal()
		return fmt.Errorf("projections: checkpoint and snapshot writes did not finish in time: %w", ctx.Err())
	}
	p.cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ckptErr
}
