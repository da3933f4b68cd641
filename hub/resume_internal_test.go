package hub

import (
	"slices"
	"testing"

	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// TestBroadcastRingFullReportsWhatItLost: a full ring may hold broadcasts
// at or after upTo (applied while the resume was being let in), so it must
// say that broadcasts below its oldest entry are unknown, not that nothing
// older matters.
func TestBroadcastRingFullReportsWhatItLost(t *testing.T) {
	b := &broadcasts{limit: 2, from: 1}
	for _, seq := range []uint64{10, 11, 13} {
		b.add(&hubpb.Notification{Seq: seq})
	}
	out, older := b.since(nil, 6, 12)
	var seqs []uint64
	for _, n := range out {
		seqs = append(seqs, n.GetSeq())
		if !n.GetRedelivered() {
			t.Errorf("seq %d not marked redelivered", n.GetSeq())
		}
	}
	if !slices.Equal(seqs, []uint64{11}) || older != 11 {
		t.Fatalf("since(6, 12) = %v, older %d; want [11], older 11 (seq 10 was evicted and must be read from the log)", seqs, older)
	}
	// Not full: complete from b.from on.
	b = &broadcasts{limit: 5, from: 8}
	b.add(&hubpb.Notification{Seq: 9})
	if _, older := b.since(nil, 2, 20); older != 8 {
		t.Fatalf("older = %d; want 8 (the start-up read began there)", older)
	}
}
