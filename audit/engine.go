package audit

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// Engine answers audit queries over one ledger. It only reads, so it works
// on a file opened read-only, a backup, or the store a running hubd holds.
type Engine struct {
	store *ledger.Store
}

// NewEngine returns an engine over store. The caller keeps owning store.
func NewEngine(store *ledger.Store) *Engine { return &Engine{store: store} }

// Store is the ledger the engine reads.
func (e *Engine) Store() *ledger.Store { return e.store }

// Filter selects events. Empty fields match everything; fields combine with
// AND, Types with OR. Only session events match (records of other topics
// never do).
type Filter struct {
	User    string
	Session string
	Device  string
	Actor   string
	Types   []eventpb.EventType
	// Since <= time < Until; a zero time leaves that side open.
	Since, Until time.Time
	// Limit is the most events delivered (0: no limit).
	Limit uint64
}

// Validate reports a filter that cannot match anything sensible.
func (f *Filter) Validate() error {
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return invalid("--until (%s) is not after --since (%s)", f.Until.UTC().Format(time.RFC3339Nano), f.Since.UTC().Format(time.RFC3339Nano))
	}
	for _, t := range f.Types {
		if t == eventpb.EventType_EVENT_TYPE_UNSPECIFIED {
			return invalid("event type unspecified")
		}
	}
	return nil
}

// Match reports whether r passes the filter's field tests (not the window
// or the limit).
func (f *Filter) Match(r *ledger.Record) bool {
	ev := r.Event
	if ev == nil {
		return false
	}
	if f.User != "" && ev.GetUser() != f.User {
		return false
	}
	if f.Session != "" && ev.GetSession() != f.Session {
		return false
	}
	if f.Device != "" && ev.GetDevice() != f.Device {
		return false
	}
	if f.Actor != "" && ev.GetActor() != f.Actor {
		return false
	}
	if len(f.Types) > 0 && !slices.Contains(f.Types, ev.GetType()) {
		return false
	}
	return true
}

// seqRange turns a time window into a seq range [from, to]; empty reports
// a window with no record in it. to == 0 means up to the head.
func (e *Engine) seqRange(since, until time.Time) (from, to uint64, empty bool, err error) {
	from = 1
	if !since.IsZero() {
		if from, err = e.store.SeqAtTime(since); err != nil {
			return 0, 0, false, err
		}
	}
	if !until.IsZero() {
		end, err := e.store.SeqAtTime(until)
		if err != nil {
			return 0, 0, false, err
		}
		if end <= from {
			return from, 0, true, nil
		}
		to = end - 1
	}
	return from, to, false, nil
}

// Events calls fn for every event that matches f, in log order. With follow
// it then waits for new events and delivers them as they are committed, until
// ctx ends (which is then not an error), f.Until passes or f.Limit is
// reached. It reads through the session or user index when f names one.
// Records that do not decode are skipped and reported at the end as a
// *CorruptError.
func (e *Engine) Events(ctx context.Context, f Filter, follow bool, fn func(*ledger.Record) error) error {
	if err := f.Validate(); err != nil {
		return err
	}
	from, to, empty, err := e.seqRange(f.Since, f.Until)
	if err != nil || empty {
		return err
	}
	var sent uint64
	stop := errors.New("limit reached")
	deliver := func(r *ledger.Record) error {
		if !f.Match(r) {
			return nil
		}
		if err := fn(r); err != nil {
			return err
		}
		sent++
		if f.Limit > 0 && sent >= f.Limit {
			return stop
		}
		return nil
	}
	c := &corruptions{}
	next, err := e.read(ctx, &f, from, to, c, deliver)
	if follow && err == nil && to == 0 {
		err = e.follow(ctx, &f, next, c, deliver)
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			err = nil
		}
	}
	if errors.Is(err, stop) {
		err = nil
	}
	if err != nil {
		return err
	}
	return c.err()
}

// follow delivers records from next on as they are committed. Until passes
// only when a record at or after it is committed.
func (e *Engine) follow(ctx context.Context, f *Filter, next uint64, c *corruptions, deliver func(*ledger.Record) error) error {
	stopAt := errors.New("until passed")
	d := deliver
	if !f.Until.IsZero() {
		d = func(r *ledger.Record) error {
			if !r.Time.Before(f.Until) {
				return stopAt
			}
			return deliver(r)
		}
	}
	for {
		changed := e.store.Changed() // before Head: a commit in between still wakes us
		if e.store.Closed() {
			return ledger.ErrClosed
		}
		if head := e.store.Head().Seq; head >= next {
			var err error
			next, err = e.read(ctx, f, next, head, c, d)
			if errors.Is(err, stopAt) {
				return nil
			}
			if err != nil {
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// read delivers the records of [from, to] (to 0: the head) that may match f,
// through an index when f names a session or user, and returns the seq after
// the last one it looked at. An index read that meets a record it cannot
// decode goes on as a filtered scan of the log from there, skipping the
// damaged record.
func (e *Engine) read(ctx context.Context, f *Filter, from, to uint64, c *corruptions, deliver func(*ledger.Record) error) (uint64, error) {
	next := from
	track := func(r *ledger.Record) error {
		next = r.Seq + 1
		return deliver(r)
	}
	head := e.store.Head().Seq // before the index read: later commits are left to follow
	var err error
	switch {
	case f.Session != "":
		err = e.store.BySession(ctx, f.Session, from, to, track)
	case f.User != "":
		err = e.store.ByUser(ctx, f.User, from, to, track)
	default:
		return e.scan(ctx, from, to, c, deliver)
	}
	if err != nil && errors.Is(err, ledger.ErrCorrupt) {
		return e.scan(ctx, next, to, c, deliver)
	}
	if err == nil {
		// The index is exhausted: every record up to head has been looked at.
		if to != 0 && to < head {
			head = to
		}
		if head+1 > next {
			next = head + 1
		}
	}
	return next, err
}

// scan delivers every record of [from, to] in order, skipping records that
// do not decode (recorded in c), and returns the seq after the last one.
func (e *Engine) scan(ctx context.Context, from, to uint64, c *corruptions, fn func(*ledger.Record) error) (uint64, error) {
	next := from
	for {
		err := e.store.Scan(ctx, next, to, func(r *ledger.Record) error {
			next = r.Seq + 1
			return fn(r)
		})
		if err == nil || !errors.Is(err, ledger.ErrCorrupt) {
			return next, err
		}
		// The record at next did not decode: skip it and go on.
		c.add(next, err)
		next++
		if to != 0 && next > to {
			return next, nil
		}
	}
}

// corruptions collects the records a query skipped.
type corruptions struct {
	seqs  []uint64
	first error
}

func (c *corruptions) add(seq uint64, err error) {
	if c.first == nil {
		c.first = err
	}
	if len(c.seqs) < 1000 {
		c.seqs = append(c.seqs, seq)
	}
}

func (c *corruptions) err() error {
	if len(c.seqs) == 0 {
		return nil
	}
	return &CorruptError{Seqs: c.seqs, Err: c.first}
}
