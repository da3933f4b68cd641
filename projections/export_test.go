package projections

import (
	"fmt"
	"maps"
	"slices"
)

// CheckIndexes returns an error naming the first way st's derived
// structures disagree with the tables they serve, nil if none: the token
// index (holders) and the per-user index against the live sessions, and
// each expiry heap (its order, its count of dropped entries, one entry
// per ban, revocation or refusal in force with an end) against the bans,
// revocations and refusals. A stale index or heap would answer
// differently after a snapshot load, which rebuilds them from the tables.
func CheckIndexes(st *State) error {
	held := 0
	for tok, hs := range st.holders {
		if tok == "" || len(hs) == 0 {
			return fmt.Errorf("holders of %q: %d sessions; want a token and at least one", tok, len(hs))
		}
		for i, h := range hs {
			if st.sessions[h.ID] != h {
				return fmt.Errorf("holders of %q: session %s is not live", tok, h.ID)
			}
			if h.TokenID != tok {
				return fmt.Errorf("holders of %q: session %s holds %q", tok, h.ID, h.TokenID)
			}
			if i > 0 && hs[i-1].ConnectSeq > h.ConnectSeq {
				return fmt.Errorf("holders of %q: %s (connect seq %d) after %s (%d); want connect order", tok, h.ID, h.ConnectSeq, hs[i-1].ID, hs[i-1].ConnectSeq)
			}
		}
		held += len(hs)
	}
	users := 0
	for user, ids := range st.byUser {
		for i, id := range ids {
			sess := st.sessions[id]
			if sess == nil || sess.User != user {
				return fmt.Errorf("sessions of user %q: %s is not a live session of theirs", user, id)
			}
			if i > 0 && st.sessions[ids[i-1]].ConnectSeq > sess.ConnectSeq {
				return fmt.Errorf("sessions of user %q: %s out of connect order", user, id)
			}
		}
		users += len(ids)
	}
	tokens := 0
	onNode := map[string]int{}
	for id, sess := range st.sessions {
		onNode[sess.Node]++
		if !slices.Contains(st.byUser[sess.User], id) {
			return fmt.Errorf("session %s is not among its user's", id)
		}
		if sess.TokenID == "" {
			continue
		}
		tokens++
		if n := countOf(st.holders[sess.TokenID], sess); n != 1 {
			return fmt.Errorf("session %s is %d times among the holders of %q; want once", id, n, sess.TokenID)
		}
	}
	if !maps.Equal(onNode, st.onNode) {
		return fmt.Errorf("live sessions per node %v; want %v", st.onNode, onNode)
	}
	if held != tokens || users != len(st.sessions) {
		return fmt.Errorf("%d token holders, %d sessions by user; want %d and %d", held, users, tokens, len(st.sessions))
	}

	var bans []*Ban
	for _, b := range st.bans {
		bans = append(bans, b)
	}
	if err := checkHeap(&st.expiry, st.banInForce, bans); err != nil {
		return fmt.Errorf("ban expiry: %w", err)
	}
	var lapses []lapse
	for _, v := range st.revokedTokens {
		lapses = append(lapses, lapse{rev: v})
	}
	for _, v := range st.revokedUsers {
		lapses = append(lapses, lapse{rev: v})
	}
	for _, f := range st.refusedDevices {
		lapses = append(lapses, lapse{ref: f})
	}
	for _, f := range st.refusedTokens {
		lapses = append(lapses, lapse{ref: f})
	}
	if err := checkHeap(&st.lapses, st.current, lapses); err != nil {
		return fmt.Errorf("lapses: %w", err)
	}
	return nil
}

func countOf(hs []*Session, sess *Session) int {
	n := 0
	for _, h := range hs {
		if h == sess {
			n++
		}
	}
	return n
}

// checkHeap checks h's order, that its count of dropped entries is the
// number of entries current rejects, and that it holds every one of
// inForce with an end exactly once.
func checkHeap[T interface {
	comparable
	expiring
}](h *expiryHeap[T], current func(T) bool, inForce []T) error {
	for i := 1; i < len(h.items); i++ {
		if h.less(i, (i-1)/2) {
			return fmt.Errorf("entry %d sorts before its parent", i)
		}
	}
	stale := 0
	times := make(map[T]int, len(h.items))
	for _, e := range h.items {
		times[e]++
		if !current(e) {
			stale++
		}
	}
	if stale != h.stale {
		return fmt.Errorf("%d dropped entries counted; %d in the heap", h.stale, stale)
	}
	for _, v := range inForce {
		want := 1
		if until, _ := v.expiresAt(); until.IsZero() {
			want = 0
		}
		if n := times[v]; n != want {
			return fmt.Errorf("%+v is %d times in the heap; want %d", v, n, want)
		}
	}
	return nil
}
