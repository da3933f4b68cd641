package ledger_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

// BenchmarkBigLedger measures the verifiable log on a big ledger, which it
// generates once (not in CI: it runs only with BENCH_BIG_DIR set):
//
//	BENCH_BIG_DIR=/tmp/big BENCH_BIG_RECORDS=10000000 go test ./ledger -run '^$' -bench BigLedger -benchtime 1x -timeout 2h
//
// prove: one inclusion proof with its leaf (what auditq prove reads);
// verifytree: VerifyTree over the whole log (what verify --checkpoint
// runs: chain, tree recomputed from the records, stored tree compared);
// build: opening a copy made format 2 (no tree), which builds the tree.
func BenchmarkBigLedger(b *testing.B) {
	dir := os.Getenv("BENCH_BIG_DIR")
	if dir == "" {
		b.Skip("set BENCH_BIG_DIR (and BENCH_BIG_RECORDS, default 10000000) to run")
	}
	n := uint64(10_000_000)
	if v := os.Getenv("BENCH_BIG_RECORDS"); v != "" {
		var err error
		if n, err = strconv.ParseUint(v, 10, 64); err != nil {
			b.Fatal(err)
		}
	}
	path := filepath.Join(dir, fmt.Sprintf("big-%d.db", n))
	if _, err := os.Stat(path); err != nil {
		generateBig(b, path, n)
	}
	b.Run("prove", func(b *testing.B) {
		s, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		rng := rand.New(rand.NewPCG(1, 2))
		b.ResetTimer()
		for b.Loop() {
			seq := 1 + rng.Uint64N(n)
			leaf, err := s.Leaf(seq)
			if err != nil {
				b.Fatal(err)
			}
			th, proof, err := s.InclusionProof(seq, n)
			if err != nil {
				b.Fatal(err)
			}
			if err := ledger.CheckInclusion(proof, th, seq, ledger.LeafHash(leaf)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/prove")
	})
	b.Run("verifytree", func(b *testing.B) {
		s, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		cpu0 := cpuTime(b)
		for b.Loop() {
			tc, err := s.VerifyTree(context.Background(), []uint64{n / 2, n}, nil)
			if err != nil || tc.Broken != nil || tc.TreeDamage != nil || tc.Root != s.Head().Root {
				b.Fatalf("%+v %v", tc, err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/1000/float64(n)/float64(b.N), "cpu-µs/record")
	})
	b.Run("verify", func(b *testing.B) {
		// What auditq verify --checkpoint runs in the ledger: VerifyTree,
		// then the cross-checks with the records' side it summed.
		s, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		cpu0 := cpuTime(b)
		for b.Loop() {
			tc, err := s.VerifyTree(context.Background(), []uint64{n / 2, n}, nil)
			if err != nil || tc.Broken != nil || tc.TreeDamage != nil {
				b.Fatalf("%+v %v", tc, err)
			}
			if fs, err := s.CrossCheckAfter(context.Background(), &tc, 0); err != nil || len(fs) > 0 {
				b.Fatalf("%v %v", fs, err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/1000/float64(n)/float64(b.N), "cpu-µs/record")
	})
	b.Run("crosscheck", func(b *testing.B) {
		s, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		for b.Loop() {
			if fs, err := s.CrossCheck(context.Background(), 0); err != nil || len(fs) > 0 {
				b.Fatalf("%v %v", fs, err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			v2 := filepath.Join(dir, "v2-copy.db")
			copyFileB(b, path, v2)
			db, err := bolt.Open(v2, 0o600, nil)
			if err != nil {
				b.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				for _, name := range []string{"tree", "checkpoints"} {
					if err := tx.DeleteBucket([]byte(name)); err != nil {
						return err
					}
				}
				meta := tx.Bucket([]byte("meta"))
				if err := meta.Delete([]byte("log_id")); err != nil {
					return err
				}
				return meta.Put([]byte("magic"), []byte("sessionledger/ledger/v2"))
			})
			db.Close()
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			s, err := ledger.Open(v2, &ledger.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
			if err != nil {
				b.Fatal(err)
			}
			took := time.Since(start)
			s.Close()
			b.ReportMetric(took.Seconds(), "s/build")
			b.ReportMetric(float64(n)/took.Seconds(), "records/s")
			os.Remove(v2)
		}
	})
}

// generateBig appends n records of benchEventSize bytes, spread over
// 10,000 users and sessions, in calls of 1000 events from 4 goroutines.
func generateBig(b *testing.B, path string, n uint64) {
	s, err := ledger.Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	evs := make([]*eventpb.Event, 1000)
	for i := range evs {
		evs[i] = ledgertest.SizedEvent(fmt.Sprintf("user-%d", i*7919%10000), fmt.Sprintf("session-%d", i*104729%10000), benchEventSize)
	}
	var next sync.Mutex
	done := uint64(0)
	var wg sync.WaitGroup
	start := time.Now()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				k := min(uint64(len(evs)), n-done)
				done += k
				d := done
				next.Unlock()
				if k == 0 {
					return
				}
				if _, err := s.Append(context.Background(), evs[:k]...); err != nil {
					b.Error(err)
					return
				}
				if d%1_000_000 == 0 {
					fmt.Fprintf(os.Stderr, "generated %d records in %s\n", d, time.Since(start).Round(time.Second))
				}
			}
		}()
	}
	wg.Wait()
}

func copyFileB(b *testing.B, from, to string) {
	src, err := os.Open(from)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		b.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		b.Fatal(err)
	}
}
