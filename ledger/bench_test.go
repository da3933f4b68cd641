package ledger_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

// benchEventSize is the encoded size of the events the benchmarks append.
const benchEventSize = 200

// benchUsers is how many distinct users (and sessions) the appended events
// spread over: 64, or BENCH_USERS.
func benchUsers(b *testing.B) int {
	v := os.Getenv("BENCH_USERS")
	if v == "" {
		return 64
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("BENCH_USERS=%q: want a whole number of at least 1", v)
	}
	return n
}

// BenchmarkAppend measures durable appends of ~200-byte events from N
// concurrent appenders (each waits for its own commit), reporting events/s.
// Compare with BenchmarkBoltCeiling from the same run.
func BenchmarkAppend(b *testing.B) {
	for _, appenders := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			s, err := ledger.Open(filepath.Join(b.TempDir(), "ledger.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			runAppenders(b, s, benchEvents(benchUsers(b)), appenders, false)
			st := s.Stats()
			b.ReportMetric(float64(st.Records)/float64(max(st.Commits, 1)), "events/commit")
		})
	}
}

// benchEvents returns the 64 events an append benchmark cycles through, of
// benchEventSize bytes, spread over users distinct users and sessions.
func benchEvents(users int) []*eventpb.Event {
	evs := make([]*eventpb.Event, 64)
	for i := range evs {
		evs[i] = ledgertest.SizedEvent(fmt.Sprintf("user-%d", i%users), fmt.Sprintf("session-%d", i%users), benchEventSize)
	}
	return evs
}

// runAppenders is the timed part of an append benchmark: appenders
// goroutines append b.N events between them, cycling through evs, each
// waiting for its own commit. It reports events/s and cpu-µs/event. With
// timeEach it also times every Append and returns the slowest; without, it
// reads no clock per append and returns 0.
func runAppenders(b *testing.B, s *ledger.Store, evs []*eventpb.Event, appenders int, timeEach bool) time.Duration {
	var next atomic.Int64
	var slowest atomic.Int64 // ns
	var wg sync.WaitGroup
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for w := 0; w < appenders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				var start time.Time
				if timeEach {
					start = time.Now()
				}
				if _, err := s.Append(ctx, evs[i%int64(len(evs))]); err != nil {
					b.Error(err)
					return
				}
				if timeEach {
					d := int64(time.Since(start))
					for m := slowest.Load(); d > m && !slowest.CompareAndSwap(m, d); m = slowest.Load() {
					}
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
	return time.Duration(slowest.Load())
}

// cpuTime is the user+system CPU time the process has used so far. On a
// shared machine CPU per event is steadier than events/s.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBoltCeiling puts the same records, already encoded, straight
// into a bbolt bucket with sequential keys, 1000 per transaction, from one
// goroutine: what the disk and bbolt allow with no ledger work at all.
func BenchmarkBoltCeiling(b *testing.B) {
	boltCeiling(b, 1000)
}

// BenchmarkBoltCeilingPerTx is BenchmarkBoltCeiling with fewer records per
// transaction. With N appenders each waiting for its own commit, a commit
// holds at most N records, so records=256 bounds appenders=256 from above.
func BenchmarkBoltCeilingPerTx(b *testing.B) {
	for _, perTx := range []int{256} {
		b.Run(fmt.Sprintf("records=%d", perTx), func(b *testing.B) { boltCeiling(b, perTx) })
	}
}

func boltCeiling(b *testing.B, perTx int) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "ceiling.db"), 0o600, &bolt.Options{InitialMmapSize: 1 << 30, FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ev := ledgertest.SizedEvent("user-1", "session-1", benchEventSize)
	rec, err := proto.Marshal(&eventpb.Record{Seq: 1, Id: make([]byte, 16), TimeUnixNano: 1, Topic: ledger.EventsTopic, Body: &eventpb.Record_Event{Event: ev}})
	if err != nil {
		b.Fatal(err)
	}
	value := append(make([]byte, 33), rec...) // the stored header: hash + version
	bucket := []byte("log")
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucket); return err }); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	seq := uint64(0)
	for done := 0; done < b.N; {
		n := min(perTx, b.N-done)
		err := db.Update(func(tx *bolt.Tx) error {
			bk := tx.Bucket(bucket)
			bk.FillPercent = 1.0
			for i := 0; i < n; i++ {
				seq++
				if err := bk.Put(binary.BigEndian.AppendUint64(nil, seq), value); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		done += n
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(len(value)), "bytes/event")
}

// BenchmarkAppendTree is the same-run A/B of the Merkle tree's cost on the
// append path: BenchmarkAppend with the tree (as shipped) and without it
// (ledger.WithoutTree, a benchmark-only switch), interleaved per appender
// count so both meet the same disk. Compare events/s and cpu-µs/event.
func BenchmarkAppendTree(b *testing.B) {
	for _, appenders := range []int{1, 16, 256} {
		for _, tree := range []bool{true, false} {
			b.Run(fmt.Sprintf("appenders=%d/tree=%v", appenders, tree), func(b *testing.B) {
				opts := ledger.Options{}
				if !tree {
					opts = ledger.WithoutTree(opts)
				}
				s, err := ledger.Open(filepath.Join(b.TempDir(), "ledger.db"), &opts)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				runAppenders(b, s, benchEvents(benchUsers(b)), appenders, false)
				st := s.Stats()
				b.ReportMetric(float64(st.Records)/float64(max(st.Commits, 1)), "events/commit")
			})
		}
	}
}
