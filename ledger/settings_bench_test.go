package ledger

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// BenchmarkAppendSettings is the A/B measurement of the bbolt settings
// issue 2 asks to measure rather than guess, behind the defaults in
// store.go: the freelist type, InitialMmapSize and the log bucket's
// FillPercent. Each pair differs from the defaults in one setting and runs
// BenchmarkAppend's appenders=256 load on a fresh ledger; "reader" adds one
// Subscriber following the events topic, as hubd's projections do, since a
// remap must wait for readers, and "backup" keeps a slow BackupTo running,
// whose one long read transaction a remap must wait out. Besides events/s
// it reports the slowest single append. Run the variants one at a time in
// interleaved rounds, so that each pair is measured under the same load of
// a shared machine (the loop is in docs/performance.md, "bbolt settings").
func BenchmarkAppendSettings(b *testing.B) {
	const mib = 1 << 20
	variants := []struct {
		name           string
		opts           Options
		reader, backup bool
	}{
		{"freelist=map", Options{}, false, false},
		{"freelist=array", Options{freelist: bolt.FreelistArrayType}, false, false},
		{"mmap=1GiB", Options{InitialMmapSize: 1024 * mib}, false, false},
		{"mmap=none", Options{InitialMmapSize: 1}, false, false},
		{"mmap=1GiB,reader", Options{InitialMmapSize: 1024 * mib}, true, false},
		{"mmap=none,reader", Options{InitialMmapSize: 1}, true, false},
		{"mmap=1GiB,backup", Options{InitialMmapSize: 1024 * mib}, false, true},
		{"mmap=none,backup", Options{InitialMmapSize: 1}, false, true},
		{"logfill=1.0", Options{FillPercent: 1.0}, false, false},
		{"logfill=0.5", Options{FillPercent: 0.5}, false, false},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) { benchSettings(b, v.opts, v.reader, v.backup) })
	}
}

// slowWriter is a backup destination that takes a millisecond per write
// (a slow disk or network peer): the backup's read transaction stays open
// long, as it would on a big ledger.
type slowWriter struct{}

func (slowWriter) Write(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return len(p), nil
}

func benchSettings(b *testing.B, opts Options, reader, backup bool) {
	const appenders = 256
	ctx := context.Background()
	s, err := Open(filepath.Join(b.TempDir(), "ledger.db"), &opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	evs := make([]*eventpb.Event, 64)
	for i := range evs {
		evs[i] = settingsEvent(i)
	}
	if reader {
		sub := NewSubscriber(s, SubscriberConfig{ConsumerGroup: "bench"})
		msgs, err := sub.Subscribe(ctx, EventsTopic)
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for m := range msgs {
				m.Ack()
			}
		}()
		defer func() {
			sub.Close() // ends the subscription, which closes msgs
			<-done
		}()
	}
	if backup {
		// Back up over and over while the appends run: a remap has to
		// wait for the backup's read transaction, and appends wait for it.
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.BackupTo(ctx, slowWriter{}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
		defer func() {
			close(stop)
			<-done
		}()
	}
	var next atomic.Int64
	var maxWait atomic.Int64 // the slowest single Append, ns
	var wg sync.WaitGroup
	cpu0 := benchCPU(b)
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
				start := time.Now()
				if _, err := s.Append(ctx, evs[i%int64(len(evs))]); err != nil {
					b.Error(err)
					return
				}
				d := int64(time.Since(start))
				for m := maxWait.Load(); d > m && !maxWait.CompareAndSwap(m, d); m = maxWait.Load() {
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(maxWait.Load())/1e6, "max-append-ms")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64((benchCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
	var size int64
	_ = s.db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	b.ReportMetric(float64(size)/float64(b.N), "file-bytes/event")
}

// settingsEvent is ledgertest.SizedEvent(user, session, 200), which this
// package cannot import (ledgertest imports ledger).
func settingsEvent(i int) *eventpb.Event {
	reason := make([]byte, 110)
	for j := range reason {
		reason[j] = 'a' + byte(j%26)
	}
	return &eventpb.Event{
		Type:    eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED,
		User:    fmt.Sprintf("user-%d", i),
		Device:  "dev-1",
		Session: fmt.Sprintf("session-%d", i),
		Node:    "node-a",
		Actor:   fmt.Sprintf("user-%d", i),
		Reason:  string(reason),
		Body:    &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{RemoteAddr: "127.0.0.1:50123", HeartbeatMs: 15000}},
	}
}

func benchCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
