package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/projections"
)

// LiveSession is a session that was live at the asked time, with the end the
// log had already ordered for it, if any (kicked, banned or superseded but
// not yet disconnected).
type LiveSession struct {
	projections.Session
	Pending *projections.PendingEnd
}

// SessionsAt returns the sessions live at t (after every event at or before
// t), oldest connect first, narrowed by f. It loads the nearest projection
// snapshot and replays from it.
func (e *Engine) SessionsAt(ctx context.Context, t time.Time, f projections.Filter) ([]LiveSession, error) {
	if t.IsZero() {
		return nil, invalid("--at is required")
	}
	st, err := projections.StateAtTime(ctx, e.store, t)
	if err != nil {
		return nil, stateErr(fmt.Sprintf("state at %s", t.UTC().Format(time.RFC3339Nano)), err)
	}
	var out []LiveSession
	for _, s := range st.Sessions(f) {
		ls := LiveSession{Session: s}
		if p, ok := st.Pending(s.ID); ok {
			ls.Pending = &p
		}
		out = append(out, ls)
	}
	return out, nil
}

// BansAt returns the bans in force at t, by user (only user's, if set).
func (e *Engine) BansAt(ctx context.Context, t time.Time, user string) ([]projections.Ban, error) {
	if t.IsZero() {
		return nil, invalid("--at is required")
	}
	st, err := projections.StateAtTime(ctx, e.store, t)
	if err != nil {
		return nil, stateErr(fmt.Sprintf("state at %s", t.UTC().Format(time.RFC3339Nano)), err)
	}
	if user != "" {
		if b, ok := st.BanAt(user, t); ok {
			return []projections.Ban{b}, nil
		}
		return nil, nil
	}
	return st.Bans(t), nil
}

// RevocationsAt returns the client token revocations in force at t: by
// token id, then by user (only user's, if set: the user's own and those of
// tokens whose revocation was recorded under the user).
func (e *Engine) RevocationsAt(ctx context.Context, t time.Time, user string) ([]projections.Revocation, error) {
	if t.IsZero() {
		return nil, invalid("--at is required")
	}
	st, err := projections.StateAtTime(ctx, e.store, t)
	if err != nil {
		return nil, stateErr(fmt.Sprintf("state at %s", t.UTC().Format(time.RFC3339Nano)), err)
	}
	all := st.Revocations(t)
	if user == "" {
		return all, nil
	}
	var out []projections.Revocation
	for _, v := range all {
		if v.User == user {
			out = append(out, v)
		}
	}
	return out, nil
}

// ReplayQuery is a window to step through.
type ReplayQuery struct {
	// From <= time < To; a zero To means up to the head. From is required.
	From, To time.Time
	// User, if set, keeps only the steps about that user: its events, and
	// changes to its sessions and bans. The state still follows every event.
	User string
}

// Step is one event of a replay and what it changed.
type Step struct {
	Record *ledger.Record
	Change projections.Change
	// Live and Bans are the live sessions and bans in force after the step.
	Live, Bans int
}

// Replay rebuilds the state just before q.From and then applies the events
// of the window one by one, calling fn with each step. A record that does
// not decode, or a seq missing from the log, ends the replay: the state
// after it is unknown.
func (e *Engine) Replay(ctx context.Context, q ReplayQuery, fn func(Step) error) error {
	if q.From.IsZero() {
		return invalid("--from is required")
	}
	if !q.To.IsZero() && !q.To.After(q.From) {
		return invalid("--to is not after --from")
	}
	from, to, empty, err := e.seqRange(ctx, q.From, q.To)
	if err != nil || empty {
		return err
	}
	if to == 0 {
		to = e.store.Head().Seq
	}
	if from > to {
		return nil
	}
	st := projections.New()
	if from > 1 {
		if st, err = projections.StateAt(ctx, e.store, from-1); err != nil {
			return stateErr(fmt.Sprintf("state before seq %d", from), err)
		}
	}
	// The state is only known while no record is lost: a seq the log
	// jumps over ends the replay, as a record that does not decode does.
	next := from
	progress := progressOf(ctx)
	err = e.store.Scan(ctx, from, to, func(r *ledger.Record) error {
		if err := ledger.CheckNext(&next, r.Seq); err != nil {
			return err
		}
		progress(r.Seq)
		ch := st.Apply(r)
		if q.User != "" && !touches(r, &ch, q.User) {
			return nil
		}
		return fn(Step{Record: r, Change: ch, Live: st.Live(), Bans: len(st.Bans(r.Time))})
	})
	if err == nil {
		err = ledger.CheckNext(&next, to+1) // the log ends early
	}
	if err != nil && errors.Is(err, ledger.ErrCorrupt) {
		return stateErr("replay", err)
	}
	return err
}

// stateErr explains why a state query stops at a damaged record instead of
// skipping it as event queries do.
func stateErr(what string, err error) error {
	if errors.Is(err, ledger.ErrCorrupt) {
		return fmt.Errorf("%s: %w; the state after a damaged record is unknown, so this query stops there (run verify)", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// touches reports whether a step is about user.
func touches(r *ledger.Record, ch *projections.Change, user string) bool {
	if r.Event.GetUser() == user {
		return true
	}
	if ch.Started != nil && ch.Started.User == user || ch.Ended != nil && ch.Ended.User == user {
		return true
	}
	for _, p := range ch.Pending {
		if p.User == user {
			return true
		}
	}
	for _, b := range ch.Expired {
		if b.User == user {
			return true
		}
	}
	if ch.Revoked != nil && ch.Revoked.User == user {
		return true
	}
	return ch.Banned != nil && ch.Banned.User == user || ch.Unbanned != nil && ch.Unbanned.User == user
}
