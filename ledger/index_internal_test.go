package ledger

import (
	"slices"
	"testing"
)

func TestPostingBlockRoundTrip(t *testing.T) {
	var p postings
	p.reset()
	p.add(kindTopic, EventsTopic, 7)
	p.add(kindUser, "alice", 7)
	p.add(kindUser, "bob", 8)
	p.add(kindTopic, EventsTopic, 8)
	p.add(kindUser, "alice", 300)
	p.add(kindSession, "", 1<<40)
	got := map[string][]uint64{}
	err := walkBlock(p.appendBlock(nil), func(kind indexKind, name, list []byte) error {
		return walkList(list, func(seq uint64) bool {
			got[string(kind)+string(name)] = append(got[string(kind)+string(name)], seq)
			return true
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]uint64{"t" + EventsTopic: {7, 8}, "ualice": {7, 300}, "ubob": {8}, "s": {1 << 40}}
	if len(got) != len(want) {
		t.Fatalf("got %v; want %v", got, want)
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			t.Fatalf("list %q: got %v; want %v", k, got[k], v)
		}
	}
	// Reused for the next commit, it holds only the new postings.
	p.reset()
	p.add(kindUser, "carol", 9)
	if n := len(p.appendBlock(nil)); n != 1+1+5+1+1 {
		t.Fatalf("block after reset: got %d bytes; want 9", n)
	}
}

// FuzzIndexBlock feeds garbage to the posting block and list decoders: they
// return an error, never panic, and lists they accept strictly increase.
func FuzzIndexBlock(f *testing.F) {
	var p postings
	p.reset()
	p.add(kindTopic, EventsTopic, 1)
	p.add(kindUser, "u", 1)
	p.add(kindSession, "s", 2)
	p.add(kindUser, "u", 5)
	f.Add(p.appendBlock(nil))
	f.Add([]byte{'u', 1, 'x', 2, 1, 0})
	f.Add([]byte{'t', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, block []byte) {
		_ = walkBlock(block, func(kind indexKind, name, list []byte) error {
			var prev uint64
			return walkList(list, func(seq uint64) bool {
				if seq <= prev {
					t.Fatalf("list %x: seq %d after %d", list, seq, prev)
				}
				prev = seq
				return true
			})
		})
		var prev uint64
		_ = walkList(block, func(seq uint64) bool {
			if seq <= prev {
				t.Fatalf("list %x: seq %d after %d", block, seq, prev)
			}
			prev = seq
			return true
		})
	})
}
