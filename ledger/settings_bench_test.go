package ledger_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
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
		opts           ledger.Options
		reader, backup bool
	}{
		{"freelist=map", ledger.Options{}, false, false},
		{"freelist=array", ledger.WithArrayFreelist(ledger.Options{}), false, false},
		{"mmap=1GiB", ledger.Options{InitialMmapSize: 1024 * mib}, false, false},
		{"mmap=none", ledger.Options{InitialMmapSize: 1}, false, false},
		{"mmap=1GiB,reader", ledger.Options{InitialMmapSize: 1024 * mib}, true, false},
		{"mmap=none,reader", ledger.Options{InitialMmapSize: 1}, true, false},
		{"mmap=1GiB,backup", ledger.Options{InitialMmapSize: 1024 * mib}, false, true},
		{"mmap=none,backup", ledger.Options{InitialMmapSize: 1}, false, true},
		{"logfill=1.0", ledger.Options{FillPercent: 1.0}, false, false},
		{"logfill=0.5", ledger.Options{FillPercent: 0.5}, false, false},
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

func benchSettings(b *testing.B, opts ledger.Options, reader, backup bool) {
	s, err := ledger.Open(filepath.Join(b.TempDir(), "ledger.db"), &opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if reader {
		sub := ledger.NewSubscriber(s, ledger.SubscriberConfig{ConsumerGroup: "bench"})
		msgs, err := sub.Subscribe(ctx, ledger.EventsTopic)
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
	slowest := runAppenders(b, s, benchEvents(64), 256, true)
	b.ReportMetric(float64(slowest)/1e6, "max-append-ms")
	size, err := s.DataSize()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(size)/float64(b.N), "file-bytes/event")
}
