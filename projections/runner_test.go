package projections_test

import (
	"bytes"
	"context"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
	"github.com/sessionledger/sessionledger/projections"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startRunner(t *testing.T, s *ledger.Store, cfg projections.Config) *projections.Runner {
	t.Helper()
	r := projections.NewRunner(s, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRunnerFollowsAndReleasesWaiters(t *testing.T) {
	s := ledgertest.Open(t, nil)
	var mu sync.Mutex
	var pending []projections.PendingEnd
	r := startRunner(t, s, projections.Config{OnChange: func(ch projections.Change) {
		mu.Lock()
		pending = append(pending, ch.Pending...)
		mu.Unlock()
	}})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	st, err := s.Append(ctx, connect("u", "d", "s1"), connect("u", "d2", "s2"))
	if err != nil {
		t.Fatal(err)
	}
	st2, err := s.Append(ctx, kick(eventpb.KickTarget_KICK_TARGET_USER_DEVICE, "u", "d2", ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitApplied(ctx, st2[0].Seq); err != nil {
		t.Fatal(err)
	}
	// OnChange ran before the waiter was released.
	mu.Lock()
	got := append([]projections.PendingEnd(nil), pending...)
	mu.Unlock()
	if len(got) != 1 || got[0].Session != "s2" || got[0].EventID != st2[0].ID {
		t.Fatalf("pending seen by OnChange = %+v; want s2 kicked by %s", got, st2[0].ID)
	}
	r.Read(func(state *projections.State) {
		if state.Live() != 2 || state.Seq() != st2[0].Seq {
			t.Fatalf("live %d seq %d; want 2 live at seq %d", state.Live(), state.Seq(), st2[0].Seq)
		}
	})
	_ = st
	// Waiting for a seq that never comes ends with the context.
	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if err := r.WaitApplied(short, 1000); err == nil {
		t.Fatal("WaitApplied for a future seq returned nil")
	}
}

func TestRunnerRestartReplaysOnlyTheTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	clk := &genClock{}
	s, err := ledger.Open(path, &ledger.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	appendGenerated(t, s, clk, 3, 300)
	r := startRunner(t, s, projections.Config{CheckpointEvery: 100})
	if cp, replayed := r.StartInfo(); cp != 0 || replayed != s.Head().Seq {
		t.Fatalf("first start: checkpoint %d replayed %d; want 0, %d", cp, replayed, s.Head().Seq)
	}
	var before []byte
	r.Read(func(st *projections.State) { before, _ = st.MarshalBinary() })
	if err := r.Close(); err != nil { // writes the final checkpoint
		t.Fatal(err)
	}
	head := s.Head().Seq
	// More events after the checkpoint.
	for i := 0; i < 5; i++ {
		if _, err := s.Append(ctx, connect("late", "d", "late-"+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	s, err = ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r = startRunner(t, s, projections.Config{})
	defer r.Close()
	cp, replayed := r.StartInfo()
	if cp != head || replayed != 5 {
		t.Fatalf("restart: checkpoint %d replayed %d; want %d, 5", cp, replayed, head)
	}
	full, err := projections.StateAt(ctx, s, 0)
	if err != nil {
		t.Fatal(err)
	}
	var after []byte
	r.Read(func(st *projections.State) { after, _ = st.MarshalBinary() })
	if want, _ := full.MarshalBinary(); !bytes.Equal(after, want) {
		t.Fatal("checkpoint + tail differs from a full replay")
	}
	if bytes.Equal(before, after) {
		t.Fatal("state did not change with the tail")
	}
	// Rebuild on demand gives the same state.
	if err := r.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	r.Read(func(st *projections.State) { after, _ = st.MarshalBinary() })
	if want, _ := full.MarshalBinary(); !bytes.Equal(after, want) {
		t.Fatal("rebuild differs from a full replay")
	}
}

func TestRunnerRebuildsOnSnapshotVersionChange(t *testing.T) {
	s, clk := openGen(t, nil)
	ctx := context.Background()
	appendGenerated(t, s, clk, 4, 100)
	// A checkpoint from a future format version claiming a later state.
	if err := s.PutBlob(ctx, projections.CheckpointKey, []byte{0x08, 0x63, 0x10, 0x05}); err != nil {
		t.Fatal(err)
	}
	r := startRunner(t, s, projections.Config{})
	defer r.Close()
	if cp, replayed := r.StartInfo(); cp != 0 || replayed != s.Head().Seq {
		t.Fatalf("checkpoint %d replayed %d; want a full rebuild (0, %d)", cp, replayed, s.Head().Seq)
	}
}

func TestRunnerWritesPeriodicSnapshots(t *testing.T) {
	s := ledgertest.Open(t, nil)
	ctx := context.Background()
	r := startRunner(t, s, projections.Config{SnapshotEvery: 10})
	for i := 0; i < 25; i++ {
		if _, err := s.Append(ctx, connect("u", "d", "s"+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.WaitApplied(ctx, 25); err != nil {
		t.Fatal(err)
	}
	r.Close() // waits for the snapshot writes
	for _, seq := range []uint64{10, 20} {
		b, err := s.GetBlob(projections.SnapshotKey(seq))
		if err != nil || b == nil {
			t.Fatalf("snapshot %d: %v, %d bytes; want stored", seq, err, len(b))
		}
		st, err := projections.UnmarshalState(b)
		if err != nil || st.Seq() != seq || st.Live() != int(seq) {
			t.Fatalf("snapshot %d: seq %d live %d err %v", seq, st.Seq(), st.Live(), err)
		}
	}
}

func TestRunnerStopsWhenLedgerCloses(t *testing.T) {
	s := ledgertest.Open(t, nil)
	r := startRunner(t, s, projections.Config{})
	defer r.Close()
	s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.WaitApplied(ctx, 10); err == nil || ctx.Err() != nil {
		t.Fatalf("WaitApplied after the ledger closed = %v (ctx %v); want a prompt error", err, ctx.Err())
	}
}

// TestRunnerCatchUpWhileTheFileGrows starts a Runner on a ledger opened
// with a small map and a snapshot and checkpoint due at every record, so
// its persister's commits outgrow bbolt's map while the catch-up reads the
// log. A commit that grows the map waits for every read transaction, so
// the catch-up must not wait for the persister while it holds one.
func TestRunnerCatchUpWhileTheFileGrows(t *testing.T) {
	s, clk := openGen(t, &ledger.Options{InitialMmapSize: 1 << 16})
	recs := appendGenerated(t, s, clk, 6, 600)
	done := make(chan error, 1)
	r := projections.NewRunner(s, projections.Config{SnapshotEvery: 1, CheckpointEvery: 1})
	go func() { done <- r.Start(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Start did not return in 30 s")
	}
	defer r.Close()
	if got := r.Applied(); got != uint64(len(recs)) {
		t.Fatalf("applied %d; want %d", got, len(recs))
	}
}

// TestFollowEqualsReplay feeds a Runner the generator's log as it is
// written, events and other-topic records in small batches: its state,
// the changes OnChange saw and every periodic snapshot must be what a
// replay of the log gives.
func TestFollowEqualsReplay(t *testing.T) {
	s, clk := openGen(t, nil)
	var mu sync.Mutex
	var seen []projections.Change
	r := startRunner(t, s, projections.Config{SnapshotEvery: 37, CheckpointEvery: 50, OnChange: func(ch projections.Change) {
		mu.Lock()
		seen = append(seen, ch)
		mu.Unlock()
	}})
	ctx := context.Background()
	g := newGen(42, projections.Policy{MaxPerUser: 2})
	pub := ledger.NewPublisher(s)
	for i := 0; i < 1500; i += 20 {
		var batch []*ledger.Record
		for j := 0; j < 20; j++ {
			batch = append(batch, g.next())
		}
		writeRecords(t, s, pub, clk, batch)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := r.WaitApplied(wctx, s.Head().Seq); err != nil {
		t.Fatal(err)
	}
	var want []projections.Change
	naive := projections.New()
	if err := projections.Replay(ctx, s, naive, 0, func(ch projections.Change) {
		ch.Record = nil
		want = append(want, ch)
	}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	r.Read(func(st *projections.State) { got = mustMarshal(t, st) })
	if !bytes.Equal(got, mustMarshal(t, naive)) {
		t.Fatal("the Runner's state differs from a replay of the log")
	}
	mu.Lock()
	for i := range seen {
		seen[i].Record = nil
	}
	if len(seen) != len(want) {
		t.Fatalf("OnChange saw %d changes; want %d", len(seen), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(seen[i], want[i]) {
			t.Fatalf("change %d:\ngot  %+v\nwant %+v", i, seen[i], want[i])
		}
	}
	mu.Unlock()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(37); seq <= s.Head().Seq; seq += 37 {
		b, err := s.GetBlob(projections.SnapshotKey(seq))
		if err != nil || b == nil {
			t.Fatalf("snapshot %d: %v", seq, err)
		}
		st, err := projections.UnmarshalState(b)
		if err != nil {
			t.Fatal(err)
		}
		n := projections.New()
		if err := projections.Replay(ctx, s, n, seq, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(mustMarshal(t, st), mustMarshal(t, n)) {
			t.Fatalf("snapshot %d differs from a replay of the prefix", seq)
		}
	}
}
