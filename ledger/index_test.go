package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

// indexModel is what the indexes should return, kept by the test.
type indexModel struct {
	user, session, topic map[string][]uint64
}

func newIndexModel() *indexModel {
	return &indexModel{user: map[string][]uint64{}, session: map[string][]uint64{}, topic: map[string][]uint64{}}
}

// appendRandom appends n events in calls of 1 to 5 events about a handful of
// users and sessions, and records them in m.
func appendRandom(t *testing.T, s *ledger.Store, m *indexModel, rng *rand.Rand, n int) {
	t.Helper()
	for n > 0 {
		k := min(n, 1+rng.IntN(5))
		evs := make([]*eventpb.Event, k)
		for i := range evs {
			evs[i] = connected(fmt.Sprintf("u%d", rng.IntN(7)), fmt.Sprintf("s%d", rng.IntN(13)))
		}
		st, err := s.Append(ctx, evs...)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range st {
			m.user[evs[i].GetUser()] = append(m.user[evs[i].GetUser()], x.Seq)
			m.session[evs[i].GetSession()] = append(m.session[evs[i].GetSession()], x.Seq)
			m.topic[ledger.EventsTopic] = append(m.topic[ledger.EventsTopic], x.Seq)
		}
		n -= k
	}
}

// checkReads compares ByUser, BySession and ByTopic over random ranges with
// the model.
func checkReads(t *testing.T, s *ledger.Store, m *indexModel, rng *rand.Rand) {
	t.Helper()
	head := s.Head().Seq
	type index struct {
		name string
		read func(context.Context, string, uint64, uint64, func(*ledger.Record) error) error
		want map[string][]uint64
	}
	for _, ix := range []index{{"user", s.ByUser, m.user}, {"session", s.BySession, m.session}, {"topic", s.ByTopic, m.topic}} {
		for name, all := range ix.want {
			for range 4 {
				from, to := uint64(rng.IntN(int(head)+2)), uint64(rng.IntN(int(head)+2))
				if rng.IntN(3) == 0 {
					from, to = 0, 0
				}
				var want []uint64
				for _, seq := range all {
					if seq >= from && (to == 0 || seq <= to) {
						want = append(want, seq)
					}
				}
				var got []uint64
				err := ix.read(ctx, name, from, to, func(r *ledger.Record) error {
					got = append(got, r.Seq)
					return nil
				})
				if err != nil {
					t.Fatalf("%s %q [%d,%d]: %v", ix.name, name, from, to, err)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("%s %q [%d,%d]: got %v; want %v", ix.name, name, from, to, got, want)
				}
			}
		}
	}
}

// TestIndexReadsSpanMergedAndTail reads the indexes while part of them is
// merged and part is still in tail blocks, for several merge thresholds,
// and again after reopening.
func TestIndexReadsSpanMergedAndTail(t *testing.T) {
	for _, threshold := range []int{1, 200, 4096, 1 << 30} {
		t.Run(fmt.Sprintf("threshold=%d", threshold), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.db")
			rng := rand.New(rand.NewPCG(1, uint64(threshold)))
			m := newIndexModel()
			spanned := false
			for round := 0; round < 3; round++ {
				s, err := ledger.Open(path, nil)
				if err != nil {
					t.Fatal(err)
				}
				s.SetMergeThreshold(threshold)
				appendRandom(t, s, m, rng, 150)
				checkReads(t, s, m, rng)
				blocks, _, err := s.IndexTail()
				if err != nil {
					t.Fatal(err)
				}
				chunks, err := s.MergedChunks()
				if err != nil {
					t.Fatal(err)
				}
				if blocks > 0 && chunks > 0 {
					spanned = true
				}
				switch {
				case threshold == 1 && blocks != 0:
					t.Fatalf("threshold 1: got %d tail blocks; want every commit merged", blocks)
				case threshold == 1<<30 && chunks != 0:
					t.Fatalf("huge threshold: got %d merged chunks; want nothing merged", chunks)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				ro, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
				if err != nil {
					t.Fatal(err)
				}
				checkReads(t, ro, m, rng)
				ledgertest.Check(t, ro)
				_ = ro.Close()
			}
			if !spanned && (threshold == 200 || threshold == 4096) {
				t.Fatalf("threshold %d: the tail and the merged index never both held postings when read", threshold)
			}
		})
	}
}

// TestIndexMergeFailureLeavesTail aborts a merge after it rewrote the
// indexes: the commit fails as a whole, and after reopening every
// acknowledged event is indexed exactly once; the next merge succeeds.
func TestIndexMergeFailureLeavesTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	rng := rand.New(rand.NewPCG(2, 2))
	m := newIndexModel()
	s, err := ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetMergeThreshold(2000)
	appendRandom(t, s, m, rng, 60)
	blocksBefore, _, err := s.IndexTail()
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("disk gone")
	s.SetMergeFailpoint(func() error { return boom })
	s.SetMergeThreshold(1) // the next commit merges, and fails
	_, err = s.Append(ctx, connected("u1", "s1"))
	if !errors.Is(err, boom) {
		t.Fatalf("append whose merge fails: got %v; want %v", err, boom)
	}
	if _, err := s.Append(ctx, connected("u1", "s1")); err == nil {
		t.Fatal("append after a failed commit: got nil error; want the sticky failure")
	}
	_ = s.Close()

	s, err = ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	blocks, _, err := s.IndexTail()
	if err != nil {
		t.Fatal(err)
	}
	if blocks != blocksBefore {
		t.Fatalf("tail after the failed merge: got %d blocks; want the %d from before", blocks, blocksBefore)
	}
	checkReads(t, s, m, rng)
	s.SetMergeThreshold(1)
	appendRandom(t, s, m, rng, 10)
	if blocks, _, _ := s.IndexTail(); blocks != 0 {
		t.Fatalf("tail after a good merge: got %d blocks; want 0", blocks)
	}
	checkReads(t, s, m, rng)
	ledgertest.Check(t, s)
}

// TestSubscriberAcrossMerges delivers a topic in order while its index is
// merged underneath the subscription.
func TestSubscriberAcrossMerges(t *testing.T) {
	s := ledgertest.Open(t, nil)
	s.SetMergeThreshold(300)
	pub := ledger.NewPublisher(s)
	sub := ledger.NewSubscriber(s, ledger.SubscriberConfig{})
	defer sub.Close()
	msgs, err := sub.Subscribe(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	const n = 400
	go func() {
		for i := 0; i < n; i++ {
			// Interleave another topic so the orders postings are sparse.
			if err := pub.Publish("other", message.NewMessage(watermill.NewUUID(), []byte("x"))); err != nil {
				t.Error(err)
				return
			}
			if err := pub.Publish("orders", message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprint(i)))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < n; i++ {
		msg := receive(t, msgs, fmt.Sprintf("message %d", i))
		if got := string(msg.Payload); got != fmt.Sprint(i) {
			t.Fatalf("message %d: got payload %q", i, got)
		}
		msg.Ack()
	}
}
