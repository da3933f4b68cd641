package projections

import (
	"container/heap"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// deadline is a test entry of an expiryHeap.
type deadline struct {
	until time.Time
	seq   uint64
}

func (d *deadline) expiresAt() (time.Time, uint64) { return d.until, d.seq }

// refHeap is the ban heap as it was before expiryHeap: container/heap
// ordered by end, then seq.
type refHeap []*deadline

func (h refHeap) Len() int { return len(h) }
func (h refHeap) Less(i, j int) bool {
	if !h[i].until.Equal(h[j].until) {
		return h[i].until.Before(h[j].until)
	}
	return h[i].seq < h[j].seq
}
func (h refHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *refHeap) Push(x any)   { *h = append(*h, x.(*deadline)) }
func (h *refHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	*h = old[:len(old)-1]
	return d
}

// TestExpiryHeapAgainstModel runs random pushes (some with equal ends and
// seqs, some with none), drops and pops through an expiryHeap and checks
// after each: popDue hands over exactly the entries in force that are due,
// soonest end first and then by seq; dropped ones never come out; the
// count of dropped entries is exact, and a drop's compaction keeps the
// heap within twice what is in force (or 2*minStaleExpiry); the layout is
// the one container/heap gives for the same operations, as the ban and
// lapse heaps used it before, so a replay orders its expiries as it did.
func TestExpiryHeapAgainstModel(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	compactions := 0
	for seed := range 20 {
		rnd := rand.New(rand.NewPCG(uint64(seed), 7))
		// Even seeds: short ends, few in force. Odd seeds: long ends and
		// more drops than pushes, so dropped entries pile up and compact.
		pushP, span := 5, 40
		if seed%2 == 1 {
			pushP, span = 3, 2000
		}
		var h expiryHeap[*deadline]
		var ref refHeap
		refStale := 0
		inForce := map[*deadline]bool{}
		var pushed []*deadline // in push order, so a seed always drops the same
		current := func(d *deadline) bool { return inForce[d] }
		now := base
		seq := uint64(0)
		for step := range 3000 {
			dropped := false
			switch p := rnd.IntN(10); {
			case p < pushP: // schedule one (or two with the same end and seq, as a kick's refusals)
				seq++
				d := &deadline{until: now.Add(time.Duration(rnd.IntN(span)) * time.Second), seq: seq}
				if rnd.IntN(20) == 0 {
					d.until = time.Time{} // never ends
				}
				n := 1 + rnd.IntN(2)
				for range n {
					e := *d
					inForce[&e] = true
					pushed = append(pushed, &e)
					h.push(&e)
					if !e.until.IsZero() {
						heap.Push(&ref, &e)
					}
				}
			case p < 8: // drop one in force
				var ds []*deadline
				for _, d := range pushed {
					if inForce[d] {
						ds = append(ds, d)
					}
				}
				pushed = ds
				if len(ds) == 0 {
					continue
				}
				d := ds[rnd.IntN(len(ds))]
				delete(inForce, d)
				before := h.stale
				h.dropped(d, current)
				dropped = true
				if before > 0 && h.stale == 0 {
					compactions++
				}
				if !d.until.IsZero() {
					refStale++
					if refStale >= minStaleExpiry && 2*refStale >= len(ref) {
						live := ref[:0]
						for _, e := range ref {
							if inForce[e] {
								live = append(live, e)
							}
						}
						ref = live
						heap.Init(&ref)
						refStale = 0
					}
				}
			default: // time passes
				now = now.Add(time.Duration(rnd.IntN(8)) * time.Second)
				var want []*deadline
				for d := range inForce {
					if !d.until.IsZero() && !d.until.After(now) {
						want = append(want, d)
					}
				}
				var got []*deadline
				h.popDue(now, current, func(d *deadline) {
					got = append(got, d)
					delete(inForce, d)
				})
				for len(ref) > 0 && !ref[0].until.After(now) {
					if d := heap.Pop(&ref).(*deadline); !slices.Contains(got, d) && refStale > 0 {
						refStale--
					}
				}
				if len(got) != len(want) {
					t.Fatalf("seed %d step %d: %d due at %s; want %d", seed, step, len(got), now, len(want))
				}
				for _, d := range want {
					if !slices.Contains(got, d) {
						t.Fatalf("seed %d step %d: %+v due at %s not handed over", seed, step, *d, now)
					}
				}
				for i := 1; i < len(got); i++ {
					a, b := got[i-1], got[i]
					if b.until.Before(a.until) || b.until.Equal(a.until) && b.seq < a.seq {
						t.Fatalf("seed %d step %d: %+v handed over before %+v; want soonest end, then seq, first", seed, step, *a, *b)
					}
				}
			}
			if !slices.Equal(h.items, []*deadline(ref)) {
				t.Fatalf("seed %d step %d: layout differs from container/heap's", seed, step)
			}
			var want []*deadline
			for d := range inForce {
				want = append(want, d)
			}
			if err := checkHeap(&h, current, want); err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			// A drop compacts (entries stay until their end otherwise).
			if withEnd := h.Len() - h.stale; dropped && h.Len() > max(2*withEnd, 2*minStaleExpiry) {
				t.Fatalf("seed %d step %d: %d entries for %d in force after a drop; want at most twice that or %d", seed, step, h.Len(), withEnd, 2*minStaleExpiry)
			}
		}
	}
	if compactions == 0 {
		t.Fatal("no compaction happened; want the test to reach it")
	}
}

// TestExpiryHeapKeepsNoZeroEnd: an entry without an end is neither kept
// nor counted when dropped.
func TestExpiryHeapKeepsNoZeroEnd(t *testing.T) {
	var h expiryHeap[*deadline]
	d := &deadline{seq: 1}
	h.push(d)
	h.dropped(d, func(*deadline) bool { return false })
	if h.Len() != 0 || h.stale != 0 {
		t.Fatalf("after a push and a drop without an end: %d entries, %d dropped; want 0 and 0", h.Len(), h.stale)
	}
	called := false
	h.popDue(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), func(*deadline) bool { return true }, func(*deadline) { called = true })
	if called {
		t.Fatal("an entry without an end came due; want never")
	}
}
