package ledger_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

// replicated returns n records as an ordering log would hand them out:
// seqs from 1, times that go back now and then (a new stream leader with
// a slower clock) and repeat within a millisecond.
func replicated(t *testing.T, n int) []ledger.Replicated {
	t.Helper()
	base := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	out := make([]ledger.Replicated, n)
	for i := range out {
		b, err := proto.Marshal(connected(fmt.Sprintf("u%d", i%7), fmt.Sprintf("s%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		at := base.Add(time.Duration(i/3) * time.Millisecond) // three per millisecond
		if i%10 == 9 {
			at = at.Add(-5 * time.Millisecond) // a clock that went back
		}
		out[i] = ledger.Replicated{Seq: uint64(i + 1), Time: at, Topic: ledger.EventsTopic, UUID: watermill.NewUUID(),
			Metadata: map[string]string{"k": "v"}, Payload: b}
	}
	return out
}

// TestReplicasAgree: two replicas fed the same records, in batches of
// different sizes, store the same bytes: the same ids, times and chain,
// with id, seq and time in the same order however the ordering log's
// clock behaved.
func TestReplicasAgree(t *testing.T) {
	recs := replicated(t, 200)
	a := ledgertest.Open(t, &ledger.Options{Replica: true})
	b := ledgertest.Open(t, &ledger.Options{Replica: true})
	for i := 0; i < len(recs); i += 50 {
		if _, err := a.Replicate(ctx, recs[i:i+50]); err != nil {
			t.Fatal(err)
		}
	}
	for i := range recs {
		if _, err := b.Replicate(ctx, recs[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if ha, hb := a.Head(), b.Head(); ha != hb || ha.Seq != 200 {
		t.Fatalf("heads differ: %+v and %+v; want the same at seq 200", ha, hb)
	}
	for seq := uint64(1); seq <= 200; seq++ {
		ra, _ := a.Get(seq)
		rb, _ := b.Get(seq)
		if ra.ID != rb.ID || !ra.Time.Equal(rb.Time) || ra.Hash != rb.Hash || ra.UUID != recs[seq-1].UUID {
			t.Fatalf("seq %d: %v/%v %v/%v; want the same record", seq, ra.ID, rb.ID, ra.Time, rb.Time)
		}
		if ra.Time.Before(recs[seq-1].Time) {
			t.Fatalf("seq %d: time %v before the ordering log's %v", seq, ra.Time, recs[seq-1].Time)
		}
	}
	// (ledgertest checks id/time/seq order and the chain on cleanup.)
}

// TestReplicateRefusesGapsAndLocalAppends: a record that is not the next
// seq is refused with ErrNotNext and writes nothing, and the replica goes
// on taking the right one; local appends are refused.
func TestReplicateRefusesGapsAndLocalAppends(t *testing.T) {
	recs := replicated(t, 5)
	s := ledgertest.Open(t, &ledger.Options{Replica: true})
	if _, err := s.Replicate(ctx, recs[:2]); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]ledger.Replicated{
		"gap": recs[3:4], "again": recs[1:2], "out of order": {recs[3], recs[2]},
	} {
		if _, err := s.Replicate(ctx, bad); !errors.Is(err, ledger.ErrNotNext) {
			t.Errorf("%s: %v; want ErrNotNext", name, err)
		}
	}
	if s.Head().Seq != 2 || s.Err() != nil {
		t.Fatalf("head %d, err %v after refused records; want 2 and a working ledger", s.Head().Seq, s.Err())
	}
	if _, err := s.Replicate(ctx, recs[2:]); err != nil {
		t.Fatalf("the next records after refusals: %v", err)
	}
	if _, err := s.Append(ctx, connected("x", "y")); !errors.Is(err, ledger.ErrReplica) {
		t.Errorf("Append on a replica: %v; want ErrReplica", err)
	}
	b, _ := proto.Marshal(connected("x", "y"))
	if err := ledger.NewPublisher(s).Publish(ledger.EventsTopic, message.NewMessage(watermill.NewUUID(), b)); !errors.Is(err, ledger.ErrReplica) {
		t.Errorf("Publish on a replica: %v; want ErrReplica", err)
	}
	local := ledgertest.Open(t, nil)
	if _, err := local.Replicate(ctx, recs[:1]); err == nil {
		t.Error("Replicate on a store that is not a replica: got nil; want an error")
	}
}

// TestReplicateStoresInvalidUnderOnInvalid: a payload that is not a hub's
// event is stored under OnInvalid, saying why, and the replica goes on;
// without OnInvalid it is refused and nothing is written.
func TestReplicateStoresInvalidUnderOnInvalid(t *testing.T) {
	recs := replicated(t, 2)
	s := ledgertest.Open(t, &ledger.Options{Replica: true})
	bad := recs[0]
	bad.Payload = []byte("not an event")
	if _, err := s.Replicate(ctx, []ledger.Replicated{bad}); err == nil || s.Head().Seq != 0 {
		t.Fatalf("an invalid event without OnInvalid: %v, head %d; want an error and nothing written", err, s.Head().Seq)
	}
	bad.OnInvalid = "rejected-events"
	if _, err := s.Replicate(ctx, []ledger.Replicated{bad, recs[1]}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Get(1)
	if err != nil {
		t.Fatal(err)
	}
	if r.Topic != "rejected-events" || r.Metadata["rejected"] == "" || string(r.Payload) != "not an event" {
		t.Fatalf("record 1: topic %q, metadata %v, payload %q; want it under rejected-events, saying why", r.Topic, r.Metadata, r.Payload)
	}
	if r, err := s.Get(2); err != nil || r.Topic != ledger.EventsTopic || r.Event == nil {
		t.Fatalf("record 2: %+v, %v; want the valid event", r, err)
	}
}
