package projections_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/projections"
)

// The generated ledgers (see benchgen_test.go). Both end with about 10,000
// live sessions. They are cached under os.TempDir() and generated on first
// use only: about a minute for 1M events, ten for 10M (0.5 GB and 5 GB).
// With -short the benchmarks use benchSmall instead, which takes a second.
var (
	bench1M    = benchLedger{events: 1_000_000, live: 10_000, users: 50_000}
	bench10M   = benchLedger{events: 10_000_000, live: 10_000, users: 50_000, snapshot: 100_000}
	benchSmall = benchLedger{events: 20_000, live: 500, users: 2_000, snapshot: 2_000}
)

// sized returns p, or benchSmall under -short.
func sized(p benchLedger) benchLedger {
	if testing.Short() {
		return benchSmall
	}
	return p
}

// BenchmarkReplay measures a full replay (decode + apply) of the 1M-event
// ledger from an empty state, as StateAt does without snapshots, reporting
// events/s. decode=raw is Replay as StateAt and the Runner use it (ScanRaw
// and the reducer's partial decoding); decode=full is the same-run baseline:
// Replay with a callback, which applies Scan's fully decoded records.
func BenchmarkReplay(b *testing.B) {
	p := sized(bench1M)
	s := openBenchLedger(b, p)
	defer s.Close()
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		fn   func(projections.Change)
	}{{"decode=raw", nil}, {"decode=full", func(projections.Change) {}}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var st *projections.State
			for i := 0; i < b.N; i++ {
				st = projections.New()
				if err := projections.Replay(ctx, s, st, 0, bc.fn); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if st.Seq() != uint64(p.events) {
				b.Fatalf("replayed to seq %d; want %d", st.Seq(), p.events)
			}
			b.ReportMetric(float64(p.events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(st.Live()), "live")
		})
	}
}

// BenchmarkEventSize reports the mean encoded size of the 1M-event ledger's
// events and stored records: it documents the input of BenchmarkReplay.
func BenchmarkEventSize(b *testing.B) {
	s := openBenchLedger(b, sized(bench1M))
	defer s.Close()
	var evBytes, n int
	for i := 0; i < b.N; i++ {
		evBytes, n = 0, 0
		err := s.Scan(context.Background(), 1, 100_000, func(r *ledger.Record) error {
			evBytes += proto.Size(r.Event)
			n++
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(evBytes)/float64(n), "event-B")
}

// BenchmarkStateAt measures state-at-T on the 10M-event ledger, T uniformly
// random over the log's time span (the same sequence of T in every
// sub-benchmark). With snapshots it is StateAtTime over the periodic
// snapshots every 100,000 events; without, the same target replayed from
// an empty state, which is what StateAt does on a ledger that has none.
func BenchmarkStateAt(b *testing.B) {
	p := sized(bench10M)
	s := openBenchLedger(b, p)
	defer s.Close()
	ctx := context.Background()
	first, last := t0, s.Head().Time
	target := func(rnd *rand.Rand) time.Time {
		return first.Add(time.Duration(rnd.Int64N(int64(last.Sub(first)) + 1)))
	}
	b.Run(fmt.Sprintf("snapshots=%d", p.snapshot), func(b *testing.B) {
		rnd := rand.New(rand.NewPCG(3, 3))
		replayed := 0
		for i := 0; i < b.N; i++ {
			st, err := projections.StateAtTime(ctx, s, target(rnd))
			if err != nil {
				b.Fatal(err)
			}
			replayed += int(st.Seq() % p.snapshot)
		}
		reportStateAt(b, replayed)
	})
	b.Run("snapshots=none", func(b *testing.B) {
		rnd := rand.New(rand.NewPCG(3, 3))
		replayed := 0
		for i := 0; i < b.N; i++ {
			after, err := s.SeqAtTime(target(rnd).Add(time.Nanosecond))
			if err != nil {
				b.Fatal(err)
			}
			st := projections.New()
			if err := projections.Replay(ctx, s, st, after-1, nil); err != nil {
				b.Fatal(err)
			}
			replayed += int(st.Seq())
		}
		reportStateAt(b, replayed)
	})
}

func reportStateAt(b *testing.B, replayed int) {
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
	b.ReportMetric(float64(replayed)/float64(b.N), "replayed/op")
}

// BenchmarkHeap replays a whole ledger into a fresh state and reports the
// heap after a GC while the state is alive: heap-MB is the process's
// HeapInuse, state-MB the growth of HeapAlloc over the same measure taken
// before the replay. Both ledgers end with ~10,000 live sessions; the
// figures should not grow from 1M to 10M events.
func BenchmarkHeap(b *testing.B) {
	ps := []benchLedger{bench1M, bench10M}
	if testing.Short() {
		ps = []benchLedger{benchSmall}
	}
	for _, p := range ps {
		b.Run(fmt.Sprintf("events=%d", p.events), func(b *testing.B) {
			s := openBenchLedger(b, p)
			defer s.Close()
			ctx := context.Background()
			var before, after runtime.MemStats
			var st *projections.State
			for i := 0; i < b.N; i++ {
				st = nil
				runtime.GC()
				runtime.ReadMemStats(&before)
				st = projections.New()
				if err := projections.Replay(ctx, s, st, 0, nil); err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
			}
			b.ReportMetric(float64(after.HeapInuse)/(1<<20), "heap-MB")
			b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/(1<<20), "state-MB")
			b.ReportMetric(float64(st.Live()), "live")
			b.ReportMetric(float64(len(st.Bans(st.Time()))), "bans")
			runtime.KeepAlive(st)
		})
	}
}

// BenchmarkRunnerStart measures a Runner's Start without a checkpoint on
// the 1M-event ledger (opened read-only, so the start-up checkpoint write
// fails and is only logged): the full rebuild a hub does after a
// SnapshotVersion change, reporting events/s.
func BenchmarkRunnerStart(b *testing.B) {
	p := sized(bench1M)
	s := openBenchLedger(b, p)
	defer s.Close()
	quiet := slog.New(slog.DiscardHandler)
	for i := 0; i < b.N; i++ {
		r := projections.NewRunner(s, projections.Config{NoSnapshots: true, Logger: quiet})
		if err := r.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		if got := r.Applied(); got != uint64(p.events) {
			b.Fatalf("applied %d; want %d", got, p.events)
		}
		_ = r.Close()
	}
	b.ReportMetric(float64(p.events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
