package projections_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/projections"
)

// TestFastReplayMatchesFullDecode writes the property-test generator's
// logs into real ledgers and checks that Replay without fn (ScanRaw and the
// reducer's partial decoding, on two goroutines) gives the state that
// applying Scan's fully decoded records gives, snapshot for snapshot, when
// replaying in random steps from random starting points.
func TestFastReplayMatchesFullDecode(t *testing.T) {
	seeds, n := 12, 1500
	if testing.Short() {
		seeds, n = 4, 1000
	}
	ctx := context.Background()
	for seed := 0; seed < seeds; seed++ {
		s, clk := openGen(t, nil)
		recs := appendGenerated(t, s, clk, uint64(2000+seed), n)
		rnd := rand.New(rand.NewPCG(uint64(seed), 9))
		full := projections.New()
		fast := projections.New()
		for full.Seq() < uint64(len(recs)) {
			// Steps across and inside the replay's batches of 256.
			to := min(full.Seq()+1+uint64(rnd.IntN(700)), uint64(len(recs)))
			for _, r := range recs[full.Seq():to] {
				full.Apply(r)
			}
			if err := projections.Replay(ctx, s, fast, to, nil); err != nil {
				t.Fatal(err)
			}
			if got, want := mustMarshal(t, fast), mustMarshal(t, full); !bytes.Equal(got, want) {
				t.Fatalf("seed %d: state after seq %d: fast replay differs from full decode", seed, to)
			}
			if rnd.IntN(3) == 0 {
				// Continue from a snapshot of it, as StateAt does.
				var err error
				if fast, err = projections.UnmarshalState(mustMarshal(t, fast)); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Replay with fn decodes in full and reports every record.
		withFn := projections.New()
		var seen []uint64
		if err := projections.Replay(ctx, s, withFn, 0, func(ch projections.Change) {
			if ch.Record == nil || ch.Record.Seq != ch.Seq || (ch.Record.Event == nil) != (ch.Record.Topic != ledger.EventsTopic) {
				t.Fatalf("change %d: record %v; want the applied record", ch.Seq, ch.Record)
			}
			seen = append(seen, ch.Seq)
		}); err != nil {
			t.Fatal(err)
		}
		if len(seen) != len(recs) || !bytes.Equal(mustMarshal(t, withFn), mustMarshal(t, full)) {
			t.Fatalf("seed %d: Replay with fn saw %d changes; want %d, and the same state", seed, len(seen), len(recs))
		}
	}
}

// TestReplayCancel: a cancelled context ends a replay with its error and
// leaves no goroutine behind (TestMain checks).
func TestReplayCancel(t *testing.T) {
	s, clk := openGen(t, nil)
	appendGenerated(t, s, clk, 1, 300)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := projections.Replay(ctx, s, projections.New(), 0, nil); err == nil {
		t.Fatal("replay with a cancelled context: got nil error")
	}
}

// TestWriteSnapshotsWhileTheFileGrows writes a snapshot after every record
// of a ledger opened with a small map, so the file outgrows bbolt's map
// during the run (a large ledger outgrows the default 1 GiB the same way).
// A commit that grows the map waits for every read transaction, so writing
// a snapshot from inside a scan of the log would never return.
func TestWriteSnapshotsWhileTheFileGrows(t *testing.T) {
	s, clk := openGen(t, &ledger.Options{InitialMmapSize: 1 << 16})
	recs := appendGenerated(t, s, clk, 5, 600)
	done := make(chan error, 1)
	var n int
	go func() {
		var err error
		n, err = projections.WriteSnapshots(context.Background(), s, 1)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil || n != len(recs) {
			t.Fatalf("WriteSnapshots: %d, %v; want %d, nil", n, err, len(recs))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("WriteSnapshots did not return in 30 s")
	}
}
