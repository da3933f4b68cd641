package ledger_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	bolt "go.etcd.io/bbolt"

	"github.com/sessionledger/sessionledger/internal/syncbuf"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

// TestOffsetPastHeadIsClamped: a consumer group whose stored offset is past
// the head of the log (a damaged or edited file, a truncated tail) would
// wait for the log to grow past it and skip every new record in between,
// its consumer stalled without a word. It starts after the head instead,
// and the store logs the offset and the head and counts it.
func TestOffsetPastHeadIsClamped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := ledger.NewPublisher(s)
	for i := 1; i <= 5; i++ {
		if err := pub.Publish("jobs", message.NewMessage(strconv.Itoa(i), []byte("x"))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := append(binary.AppendUvarint(nil, uint64(len("jobs"))), "jobsg"...)
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("offsets")).Put(key, binary.BigEndian.AppendUint64(nil, 1000))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	var logs syncbuf.Buffer
	s, err = ledger.Open(path, &ledger.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sub := ledger.NewSubscriber(s, ledger.SubscriberConfig{ConsumerGroup: "g"})
	defer sub.Close()
	msgs, err := sub.Subscribe(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.NewPublisher(s).Publish("jobs", message.NewMessage("6", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	m := receive(t, msgs, "the record appended after the head")
	if m.UUID != "6" || m.Metadata.Get(ledger.MetadataSeq) != "6" {
		t.Fatalf("delivered %s (seq %s); want 6", m.UUID, m.Metadata.Get(ledger.MetadataSeq))
	}
	m.Ack()
	if got := logs.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "offset=1000 head=5 clamped_to=6") {
		t.Errorf("log: got %q; want a warning naming the offset 1000 and the head 5", got)
	}
	if n := s.Stats().OffsetsClamped; n != 1 {
		t.Errorf("Stats().OffsetsClamped = %d; want 1", n)
	}
}

// TestIndexPastHeadIsDropped: with the newest records of a log gone (a
// truncated tail), its indexes still held entries for them, in the tail or
// merged. The next appends reuse those seqs: the indexes then named new
// records under old users and sessions, and a reader met the same seq
// twice and stopped (the projections' subscription ended, and hubd could
// not start). A read-write Open drops them, says so and counts them.
//
// The Merkle tree catches a truncation of the log alone (a read-write
// Open refuses it: TestTruncatedLogIsRefused); here the tree went too, as
// if the file were a format v2 one, whose tree Open builds from the log
// it finds.
func TestIndexPastHeadIsDropped(t *testing.T) {
	for _, c := range []struct {
		name  string
		merge int // merge threshold; 1 merges every commit
	}{{"tail", 0}, {"merged", 1}} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.db")
			s, err := ledger.Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.merge > 0 {
				s.SetMergeThreshold(c.merge)
			}
			for i := range 20 {
				if _, err := s.Append(ctx, ledgertest.Event(eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, fmt.Sprintf("u%d", i%3), fmt.Sprintf("s%d", i))); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			damageTx(t, path, func(tx *bolt.Tx) error {
				for seq := uint64(13); seq <= 20; seq++ {
					if err := tx.Bucket([]byte("log")).Delete(key(seq)); err != nil {
						return err
					}
				}
				if err := tx.DeleteBucket([]byte("tree")); err != nil {
					return err
				}
				return tx.Bucket([]byte("meta")).Put([]byte("magic"), []byte("sessionledger/ledger/v2"))
			})
			var logs syncbuf.Buffer
			s, err = ledger.Open(path, &ledger.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Stats().IndexEntriesDropped; got != 8*3 {
				t.Errorf("Stats().IndexEntriesDropped = %d; want 24 (topic, user and session of 8 records)", got)
			}
			if got := logs.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "head=12 index_reached=20 entries_dropped=24") {
				t.Errorf("log: got %q; want a warning naming the head 12 and seq 20", got)
			}
			// One commit of six: its tail block does not line up with the
			// dropped ones.
			var evs []*eventpb.Event
			for i := range 6 {
				evs = append(evs, ledgertest.Event(eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, fmt.Sprintf("v%d", i), fmt.Sprintf("t%d", i)))
			}
			if _, err := s.Append(ctx, evs...); err != nil {
				t.Fatal(err)
			}
			n := 0
			if err := s.ByTopic(ctx, ledger.EventsTopic, 0, 0, func(*ledger.Record) error { n++; return nil }); err != nil || n != 18 {
				t.Fatalf("ByTopic: %d records, %v; want 18", n, err)
			}
			ledgertest.Check(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// Once dropped, a reopen finds nothing more to drop.
			s, err = ledger.Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.Stats().IndexEntriesDropped; got != 0 {
				t.Errorf("second reopen dropped %d entries; want 0", got)
			}
		})
	}
}

// TestTruncatedLogIsRefused: the log's newest records deleted and nothing
// else: the stored tree still covers them, and a read-write Open refuses
// the file, naming what happened and what to do.
func TestTruncatedLogIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := s.Append(ctx, ledgertest.Event(eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, "u", fmt.Sprintf("s%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	damage(t, path, func(log *bolt.Bucket) error {
		for seq := uint64(13); seq <= 20; seq++ {
			if err := log.Delete(key(seq)); err != nil {
				return err
			}
		}
		return nil
	})
	_, err = ledger.Open(path, nil)
	if !errors.Is(err, ledger.ErrCorrupt) || !strings.Contains(err.Error(), "covers 20 records but the log ends at seq 12") || !strings.Contains(err.Error(), "restore the ledger from a backup") {
		t.Fatalf("Open of a truncated log: %v; want ErrCorrupt naming 20 and 12 and what to do", err)
	}
}

// damageTx edits the ledger file at path with bbolt directly.
func damageTx(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	db.Close()
}
