package projections

import "time"

// expiring is what an expiryHeap holds: something in force until a time,
// scheduled by the record seq. Both must not change once it is scheduled
// (the state replaces an entry with a new one instead of editing it).
type expiring interface {
	expiresAt() (until time.Time, seq uint64)
}

// expiryHeap keeps the reducer's deadlines (ban expiry, revocation and
// refusal lapses) soonest first; equal ends go in seq order, so what Apply
// reports never depends on the heap's layout. A zero end is never due and
// is not kept.
//
// Removal is lazy: the state drops an entry by taking it out of its own
// maps and calling dropped; popDue then skips it, since current (the
// state's "is this still the one in force?") says no. Once dropped entries
// are half the heap (and at least minStaleExpiry) dropped compacts it, so
// the heap grows with what is in force, not with what was ever recorded.
//
// The sift-up and sift-down are container/heap's, written out for T so that
// pushing and popping neither box nor allocate: the same operations give
// the same layout as before, hence the same order, in every replay.
type expiryHeap[T expiring] struct {
	items []T
	// stale counts the entries dropped but not yet popped or compacted.
	stale int
}

// minStaleExpiry is how many dropped entries wait for a compaction at
// least, so small states do not compact on every drop.
const minStaleExpiry = 64

// Len is the number of entries, dropped ones included.
func (h *expiryHeap[T]) Len() int { return len(h.items) }

// next returns the soonest entry, dropped or not, if there is one. Apply
// looks at it first, so a record that makes nothing due costs a look.
func (h *expiryHeap[T]) next() (v T, ok bool) {
	if len(h.items) == 0 {
		return v, false
	}
	return h.items[0], true
}

// push schedules v; one with a zero end never expires and is not kept.
func (h *expiryHeap[T]) push(v T) {
	if until, _ := v.expiresAt(); until.IsZero() {
		return
	}
	h.items = append(h.items, v)
	h.up(len(h.items) - 1)
}

// popDue removes every entry whose end is at or before now, soonest first,
// and hands due the ones current still reports in force; the others were
// dropped and are only counted off.
func (h *expiryHeap[T]) popDue(now time.Time, current func(T) bool, due func(T)) {
	for len(h.items) > 0 {
		if until, _ := h.items[0].expiresAt(); until.After(now) {
			return
		}
		v := h.pop()
		if current(v) {
			due(v)
		} else if h.stale > 0 {
			h.stale--
		}
	}
}

// dropped notes that v, scheduled before, is no longer in force (lifted or
// replaced; current must now report false for it), and compacts the heap,
// keeping what current reports, once dropped entries are half of it.
func (h *expiryHeap[T]) dropped(v T, current func(T) bool) {
	if until, _ := v.expiresAt(); until.IsZero() {
		return // never in the heap
	}
	h.stale++
	if h.stale < minStaleExpiry || 2*h.stale < len(h.items) {
		return
	}
	live := h.items[:0]
	for _, e := range h.items {
		if current(e) {
			live = append(live, e)
		}
	}
	clear(h.items[len(live):])
	h.items = live
	for i := len(h.items)/2 - 1; i >= 0; i-- { // container/heap.Init
		h.down(i, len(h.items))
	}
	h.stale = 0
}

// pop removes and returns the soonest entry (container/heap.Pop).
func (h *expiryHeap[T]) pop() T {
	n := len(h.items) - 1
	h.items[0], h.items[n] = h.items[n], h.items[0]
	h.down(0, n)
	v := h.items[n]
	var zero T
	h.items[n] = zero
	h.items = h.items[:n]
	return v
}

func (h *expiryHeap[T]) less(i, j int) bool {
	ui, si := h.items[i].expiresAt()
	uj, sj := h.items[j].expiresAt()
	if !ui.Equal(uj) {
		return ui.Before(uj)
	}
	return si < sj
}

func (h *expiryHeap[T]) up(j int) {
	for {
		i := (j - 1) / 2 // parent
		if i == j || !h.less(j, i) {
			break
		}
		h.items[i], h.items[j] = h.items[j], h.items[i]
		j = i
	}
}

func (h *expiryHeap[T]) down(i0, n int) {
	i := i0
	for {
		j1 := 2*i + 1
		if j1 >= n || j1 < 0 { // j1 < 0 after int overflow
			break
		}
		j := j1 // left child
		if j2 := j1 + 1; j2 < n && h.less(j2, j1) {
			j = j2 // right child
		}
		if !h.less(j, i) {
			break
		}
		h.items[i], h.items[j] = h.items[j], h.items[i]
		i = j
	}
}
