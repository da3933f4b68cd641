package ledger_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// scanBoth reads from..to with Scan and with ScanRaw and fails t unless
// they give the same records: seq, id, time, hash and event.
func scanBoth(t *testing.T, s *ledger.Store, from, to uint64) int {
	t.Helper()
	var want []*ledger.Record
	if err := s.Scan(ctx, from, to, func(r *ledger.Record) error { want = append(want, r); return nil }); err != nil {
		t.Fatal(err)
	}
	i := 0
	err := s.ScanRaw(ctx, from, to, func(r *ledger.RawRecord) error {
		if i >= len(want) {
			return fmt.Errorf("ScanRaw gave seq %d after Scan's last", r.Seq)
		}
		w := want[i]
		i++
		if r.Seq != w.Seq || r.ID != w.ID || !r.Time.Equal(w.Time) || r.Hash != w.Hash {
			return fmt.Errorf("got seq %d id %s time %s; want %d %s %s", r.Seq, r.ID, r.Time, w.Seq, w.ID, w.Time)
		}
		if (r.Event == nil) != (w.Event == nil) {
			return fmt.Errorf("seq %d: event bytes %x; want event %v", r.Seq, r.Event, w.Event)
		}
		if r.Event != nil {
			var ev eventpb.Event
			if err := proto.Unmarshal(r.Event, &ev); err != nil || !proto.Equal(&ev, w.Event) {
				return fmt.Errorf("seq %d: event %v (%v); want %v", r.Seq, &ev, err, w.Event)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if i != len(want) {
		t.Fatalf("ScanRaw gave %d records; Scan %d", i, len(want))
	}
	return i
}

// TestScanRawMatchesScan reads a log of events and other watermill
// messages, one of them rewritten in a valid but non-canonical encoding,
// with both scans, over ranges that cross scan chunks.
func TestScanRawMatchesScan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := ledger.NewPublisher(s)
	var evs []*eventpb.Event
	for i := 0; i < 5000; i++ {
		evs = append(evs, connected(fmt.Sprintf("u%d", i%7), fmt.Sprintf("s%d", i)))
	}
	if _, err := s.Append(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	payload, _ := proto.Marshal(connected("alice", "p1"))
	for i, topic := range []string{ledger.EventsTopic, "other", "other"} {
		m := message.NewMessage(watermill.NewUUID(), payload)
		m.Metadata.Set("trace", fmt.Sprint(i))
		if topic != ledger.EventsTopic {
			m.Payload = []byte{byte(i)}
		}
		if err := pub.Publish(topic, m); err != nil {
			t.Fatal(err)
		}
	}
	head := s.Head().Seq
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Seq 7 with its fields in reverse order: proto decodes it the same.
	damage(t, path, func(log *bolt.Bucket) error {
		v := log.Get(key(7))
		var pb eventpb.Record
		if err := proto.Unmarshal(v[33:], &pb); err != nil {
			return err
		}
		ev, _ := proto.Marshal(pb.GetEvent())
		out := append([]byte(nil), v[:33]...)
		out = protowire.AppendTag(out, 8, protowire.BytesType)
		out = protowire.AppendBytes(out, ev)
		out = protowire.AppendTag(out, 4, protowire.BytesType)
		out = protowire.AppendString(out, pb.GetTopic())
		out = protowire.AppendTag(out, 3, protowire.VarintType)
		out = protowire.AppendVarint(out, uint64(pb.GetTimeUnixNano()))
		out = protowire.AppendTag(out, 2, protowire.BytesType)
		out = protowire.AppendBytes(out, pb.GetId())
		out = protowire.AppendTag(out, 1, protowire.VarintType)
		out = protowire.AppendVarint(out, pb.GetSeq())
		return log.Put(key(7), out)
	})
	s, err = ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, r := range [][2]uint64{{0, 0}, {1, head}, {7, 7}, {4000, 4200}, {head - 3, head + 10}} {
		want := int(min(r[1], head) - max(r[0], 1) + 1)
		if r[1] == 0 {
			want = int(head)
		}
		if n := scanBoth(t, s, r[0], r[1]); n != want {
			t.Fatalf("ScanRaw(%d, %d) gave %d records; want %d", r[0], r[1], n, want)
		}
	}
	// ErrStop ends it early without an error.
	n := 0
	if err := s.ScanRaw(ctx, 1, 0, func(*ledger.RawRecord) error { n++; return ledger.ErrStop }); err != nil || n != 1 {
		t.Fatalf("ScanRaw with ErrStop: %d records, %v; want 1, nil", n, err)
	}
}

// TestScanRawStopsAtCorruptEnvelope: a record whose envelope does not
// decode ends ScanRaw with ErrCorrupt, as it ends Scan.
func TestScanRawStopsAtCorruptEnvelope(t *testing.T) {
	path := tamperFixture(t)
	damage(t, path, func(log *bolt.Bucket) error {
		v := append([]byte(nil), log.Get(key(50))...)
		v[33] = 0x07 // the first tag: field 0, wire type 7
		return log.Put(key(50), v)
	})
	s, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	err = s.ScanRaw(ctx, 1, 0, func(*ledger.RawRecord) error { n++; return nil })
	if !errors.Is(err, ledger.ErrCorrupt) || n != 49 {
		t.Fatalf("ScanRaw over a corrupt seq 50: %d records, %v; want 49 and ErrCorrupt", n, err)
	}
}
