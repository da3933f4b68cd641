package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// Engine answers audit queries over one ledger. It only reads, so it works
// on a file opened read-only, a backup, or the store a running hubd holds.
type Engine struct {
	store *ledger.Store
	// verifierKey is the hub's checkpoint verifier key (Server's
	// WithVerifierKey); empty on a file.
	verifierKey string
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
	// Message is a record's watermill message UUID (the id an
	// OUTCOME_UNKNOWN answer names).
	Message string
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
	if f.Message != "" && r.UUID != f.Message {
		return false
	}
	if len(f.Types) > 0 && !slices.Contains(f.Types, ev.GetType()) {
		return false
	}
	return true
}

// seqRange turns a time window into a seq range [from, to]; empty reports
// a window with no record in it. to == 0 means up to the head.
func (e *Engine) seqRange(ctx context.Context, since, until time.Time) (from, to uint64, empty bool, err error) {
	from = 1
	if !since.IsZero() {
		if from, err = e.seqAtTime(ctx, since); err != nil {
			return 0, 0, false, err
		}
	}
	if !until.IsZero() {
		end, err := e.seqAtTime(ctx, until)
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

// seqAtTime is the ledger's SeqAtTime: the first seq at or after t. That
// is a binary search, which fails where it lands on a record that is
// missing or does not decode; then a scan finds the answer, stepping over
// the damage (the query's own read reports it, if it falls in its window).
func (e *Engine) seqAtTime(ctx context.Context, t time.Time) (uint64, error) {
	seq, err := e.store.SeqAtTime(t)
	if err == nil || !errors.Is(err, ledger.ErrCorrupt) {
		return seq, err
	}
	next, found := uint64(1), uint64(0)
	for {
		err := e.store.ScanRaw(ctx, next, 0, func(r *ledger.RawRecord) error {
			next = r.Seq + 1
			if !r.Time.Before(t) {
				found = r.Seq
				return ledger.ErrStop
			}
			return nil
		})
		switch {
		case found != 0:
			return found, nil
		case err == nil:
			return next, nil // every record is before t
		case !errors.Is(err, ledger.ErrCorrupt):
			return 0, err
		}
		var sound *ledger.Record
		if next, sound = e.skipDamaged(next, 0, &corruptions{}, err); sound != nil && !sound.Time.Before(t) {
			return sound.Seq, nil
		}
	}
}

// Events calls fn for every event that matches f, in log order. With follow
// it then waits for new events and delivers them as they are committed, until
// ctx ends (which is then not an error), f.Until passes (a record at or
// after it is committed) or f.Limit is reached; a window that begins or ends
// in the future is followed too. It reads through the session or user index
// when f names one. Damaged records (see the package doc) are skipped and
// reported at the end as a *CorruptError.
func (e *Engine) Events(ctx context.Context, f Filter, follow bool, fn func(*ledger.Record) error) error {
	if err := f.Validate(); err != nil {
		return err
	}
	head := e.store.Head().Seq
	from, to, empty, err := e.seqRange(ctx, f.Since, f.Until)
	if err != nil {
		return err
	}
	if follow && !f.Until.IsZero() {
		// Follow only while no record has reached Until yet: while the
		// first seq at or after Until, to+1, is past the head. An empty
		// window has no to; it is past the head when it starts there
		// (every record is before Since, so before Until too), and
		// otherwise it ends where it starts or before.
		end := to + 1
		if empty {
			end = from
		}
		follow = end > head
	}
	if empty && !follow {
		return nil
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
	next := from
	if !empty {
		next, err = e.read(ctx, &f, from, to, c, deliver)
	}
	if follow && err == nil {
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

// follow delivers records from next on as they are committed, those of
// the window [Since, Until) only. Until passes only when a record at or
// after it is committed.
func (e *Engine) follow(ctx context.Context, f *Filter, next uint64, c *corruptions, deliver func(*ledger.Record) error) error {
	stopAt := errors.New("until passed")
	d := func(r *ledger.Record) error {
		switch {
		case !f.Until.IsZero() && !r.Time.Before(f.Until):
			return stopAt
		case r.Time.Before(f.Since):
			return nil // a window that begins in the future
		}
		return deliver(r)
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
// decode, or that names a seq the log lacks, goes on as a filtered scan of
// the log from there, which skips and reports the damage (c).
func (e *Engine) read(ctx context.Context, f *Filter, from, to uint64, c *corruptions, deliver func(*ledger.Record) error) (uint64, error) {
	next := from
	progress := progressOf(ctx)
	track := func(r *ledger.Record) error {
		next = r.Seq + 1
		progress(r.Seq)
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
		// The scan meets the damage the index met, and reports it: a
		// record that does not decode, or the gap where a record the index
		// names was deleted. An error the scan does not explain is damage
		// in the index itself: the answer, read from the log, is whole,
		// but the file is not, so the error is kept.
		found, indexErr := c.found(), err
		next, err = e.scan(ctx, next, to, c, deliver)
		if err == nil && c.found() == found && c.index == nil {
			c.index = fmt.Errorf("%w; the records were read from the log instead (run verify)", indexErr)
		}
		return next, err
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

// scan delivers every record of [from, to] in order and returns the seq
// after the last one. It skips the records that do not decode, and notes
// in c the seqs the log jumps over (deleted records): the seqs of a log
// are consecutive, so any jump is damage.
func (e *Engine) scan(ctx context.Context, from, to uint64, c *corruptions, fn func(*ledger.Record) error) (uint64, error) {
	next := from
	progress := progressOf(ctx)
	for {
		stopped := false
		err := e.store.Scan(ctx, next, to, func(r *ledger.Record) error {
			if r.Seq > next {
				c.addMissing(next, r.Seq-1)
			}
			next = r.Seq + 1
			progress(r.Seq)
			if err := fn(r); err != nil {
				stopped = true
				return err
			}
			return nil
		})
		if stopped || err != nil && !errors.Is(err, ledger.ErrCorrupt) {
			return next, err
		}
		if err == nil {
			if to != 0 && next <= to {
				c.addMissing(next, to) // the log ends early
			}
			return next, nil
		}
		var sound *ledger.Record
		if next, sound = e.skipDamaged(next, to, c, err); sound != nil {
			if err := fn(sound); err != nil {
				return next, err
			}
		}
		if to != 0 && next > to {
			return next, nil
		}
	}
}

// skipDamaged is called when a read of the log from seq ended with
// ErrCorrupt (err), every record before seq delivered: the read met
// damage before the next record it could deliver. It looks for the first
// record at or after seq, notes the seqs before it as missing, and
// returns the seq to read on from. If that record does not decode, it is
// the damage: it is noted in c and skipped. If it decodes, the damage was
// no record (a stray or short key in the log, which sorts before it): it
// is noted without a seq, and the record, which is sound, is returned for
// the caller to deliver; the read goes on after it (a read from seq again
// would meet the same key when seq is 1: a read from the start begins at
// the first key, whatever it is).
func (e *Engine) skipDamaged(seq, to uint64, c *corruptions, err error) (next uint64, sound *ledger.Record) {
	last := e.store.Head().Seq
	if to != 0 && to < last {
		last = to
	}
	for s := seq; s <= last; s++ {
		r, gerr := e.store.Get(s)
		if errors.Is(gerr, ledger.ErrNotFound) {
			continue
		}
		if s > seq {
			c.addMissing(seq, s-1)
		}
		if gerr == nil {
			c.addStray(err)
			return s + 1, r
		}
		c.add(s, gerr) // gerr names the seq
		return s + 1, nil
	}
	// No record from seq to last: they are missing, and what the read
	// met is no record either.
	if seq <= last {
		c.addMissing(seq, last)
	}
	c.addStray(err)
	return max(seq, last) + 1, nil
}

// maxNoted bounds the damaged records a query lists.
const maxNoted = 1000

// corruptions collects the damage a query skipped: records that do not
// decode, and seqs missing from the log.
type corruptions struct {
	seqs    []uint64
	missing []SeqRange
	strays  []string // damage that is no record, described
	first   error
	// index is an index error that the scan of the log did not explain.
	index error
}

func (c *corruptions) add(seq uint64, err error) {
	if slices.Contains(c.seqs, seq) {
		return // a query that reads twice (a timeline) meets it twice
	}
	if c.first == nil {
		c.first = err
	}
	if len(c.seqs) < maxNoted {
		c.seqs = append(c.seqs, seq)
	}
}

// addStray notes damage that is no record (err describes it).
func (c *corruptions) addStray(err error) {
	what := strings.TrimPrefix(err.Error(), ledger.ErrCorrupt.Error()+": ")
	if slices.Contains(c.strays, what) {
		return // a query that reads twice (a timeline) meets it twice
	}
	if c.first == nil {
		c.first = err
	}
	if len(c.strays) < maxNoted {
		c.strays = append(c.strays, what)
	}
}

func (c *corruptions) addMissing(from, to uint64) {
	r := SeqRange{from, to}
	for i, m := range c.missing {
		if r.From <= m.To+1 && m.From <= r.To+1 {
			c.missing[i] = SeqRange{min(m.From, r.From), max(m.To, r.To)}
			return
		}
	}
	if c.first == nil {
		c.first = fmt.Errorf("%w: seq %s missing from the log", ledger.ErrCorrupt, r)
	}
	if len(c.missing) < maxNoted {
		c.missing = append(c.missing, r)
	}
}

// found is how much damage c holds.
func (c *corruptions) found() int { return len(c.seqs) + len(c.missing) + len(c.strays) }

func (c *corruptions) err() error {
	if c.found() == 0 {
		if c.index != nil {
			return c.index
		}
		return nil
	}
	seqs, missing := slices.Clone(c.seqs), slices.Clone(c.missing)
	slices.Sort(seqs)
	slices.SortFunc(missing, func(a, b SeqRange) int { return cmp.Compare(a.From, b.From) })
	return &CorruptError{Seqs: seqs, Missing: missing, Strays: slices.Clone(c.strays), Err: c.first}
}
