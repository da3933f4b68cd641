package cluster_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sessionledger/sessionledger/ledger"
)

// stamper is what both sides of the append benchmark publish through.
type stamper interface {
	PublishStamped(topic string, msgs ...*message.Message) ([]ledger.Stamp, error)
}

// BenchmarkClusterAppend: events appended through the cluster (three
// embedded NATS servers and three replicas in this process, publishing on
// one node, which returns once JetStream acknowledged and its own replica
// stored the record) against the same events appended to a single node's
// ledger, in the same run, at 1, 16 and 256 appenders. It reports
// events/s and the p50/p99 latency of one append.
func BenchmarkClusterAppend(b *testing.B) {
	single, err := ledger.Open(filepath.Join(b.TempDir(), "ledger.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer single.Close()
	ms := testCluster(b, 3)
	for _, appenders := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("single/appenders=%d", appenders), func(b *testing.B) { benchAppend(b, ledger.NewPublisher(single), appenders) })
		b.Run(fmt.Sprintf("cluster/appenders=%d", appenders), func(b *testing.B) { benchAppend(b, ms[0].node.Publisher(), appenders) })
	}
}

func benchAppend(b *testing.B, p stamper, appenders int) {
	var next atomic.Int64
	lat := make([][]time.Duration, appenders)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				m := event("u"+strconv.Itoa(int(i%64)), "s"+strconv.FormatInt(i, 10))
				t0 := time.Now()
				if _, err := p.PublishStamped(ledger.EventsTopic, m); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(len(all))/d.Seconds(), "events/s")
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkCatchUp: a node that was down while the cluster recorded
// BENCH_CATCHUP_EVENTS events (default 100,000; the figure in
// docs/performance.md is for 1,000,000) joins with an empty ledger, and
// the time until its ledger holds them all is measured.
func BenchmarkCatchUp(b *testing.B) {
	n := 100_000
	if v := os.Getenv("BENCH_CATCHUP_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("BENCH_CATCHUP_EVENTS=%q: want a positive number", v)
		}
	}
	ms := testCluster(b, 3)
	late := ms[2]
	late.stop()
	b.Logf("recording %d events with %s down", n, late.name)
	var next atomic.Int64
	var wg sync.WaitGroup
	rec := time.Now()
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := ms[0].node.Publisher().PublishStamped(ledger.EventsTopic, event("u", "s")); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	head := ms[0].store.Head().Seq
	b.Logf("recorded them in %s (%.0f events/s with 256 appenders and two nodes)", time.Since(rec).Round(time.Second), float64(n)/time.Since(rec).Seconds())
	if err := os.Remove(filepath.Join(late.dir, "ledger.db")); err != nil {
		b.Fatal(err)
	}
	// Join catches up before it returns, within the node's StartTimeout
	// (hubd's default, 60 s, is shorter than a million events take here):
	// allow a millisecond an event.
	late.cfg.StartTimeout = 40*time.Second + time.Duration(n)*time.Millisecond
	b.ResetTimer()
	t0 := time.Now()
	// Start catches up before it returns.
	if err := late.start(b); err != nil {
		b.Fatal(err)
	}
	// Join returned caught up with the stream as it was when it asked; the
	// rest lands within moments, or the benchmark fails saying where.
	for deadline := time.Now().Add(time.Minute); late.store.Head().Seq < head; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("the late node's ledger reached seq %d of %d within a minute after Join", late.store.Head().Seq, head)
		}
	}
	d := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(head)/d.Seconds(), "events/s")
	b.ReportMetric(d.Seconds(), "seconds")
	b.ReportMetric(float64(head), "events")
}
