package ledger_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

// naiveRoot is RFC 6962's MTH written out from its definition (section
// 2.1), independent of the library, over the leaves' data.
func naiveRoot(leaves [][]byte) ledger.Hash {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return sha256.Sum256(append([]byte{0}, leaves[0]...))
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := naiveRoot(leaves[:k]), naiveRoot(leaves[k:])
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

// appendConcurrently appends n events from 8 goroutines, some calls with
// several events, so that commits hold varied numbers of records.
func appendConcurrently(t *testing.T, s *ledger.Store, n int) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	left := n
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				k := min(left, 1+w%3)
				left -= k
				mu.Unlock()
				if k == 0 {
					return
				}
				evs := make([]*eventpb.Event, k)
				for i := range evs {
					evs[i] = connected(fmt.Sprintf("u%d", w), fmt.Sprintf("s%d", w))
				}
				if _, err := s.Append(ctx, evs...); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func leaves(t *testing.T, s *ledger.Store) [][]byte {
	t.Helper()
	var out [][]byte
	for seq := uint64(1); seq <= s.Head().Seq; seq++ {
		l, err := s.Leaf(seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

// TestTreeProofsRandomSizes checks the ledger's tree against the RFC's
// definition at every size, and inclusion and consistency proofs for
// random sizes and leaves with the library's verifier.
func TestTreeProofsRandomSizes(t *testing.T) {
	s := ledgertest.Open(t, nil)
	appendConcurrently(t, s, 300)
	ls := leaves(t, s)
	head := s.Head()
	if got, want := head.Root, naiveRoot(ls); got != want {
		t.Fatalf("head root %x; want %x", got, want)
	}
	th, err := s.TreeHead()
	if err != nil || th.Size != head.Seq || th.Root != head.Root {
		t.Fatalf("TreeHead() = %+v, %v; want the head's", th, err)
	}
	roots := make([]ledger.Hash, len(ls)+1)
	for size := range roots {
		roots[size] = naiveRoot(ls[:size])
		got, err := s.TreeRoot(uint64(size))
		if err != nil || got != roots[size] {
			t.Fatalf("TreeRoot(%d) = %x, %v; want %x", size, got, err, roots[size])
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		size := 1 + rng.Uint64N(head.Seq)
		seq := 1 + rng.Uint64N(size)
		th, proof, err := s.InclusionProof(seq, size)
		if err != nil {
			t.Fatal(err)
		}
		if th.Root != roots[size] {
			t.Fatalf("InclusionProof(%d, %d) root %x; want %x", seq, size, th.Root, roots[size])
		}
		leaf := ledger.LeafHash(ls[seq-1])
		if err := ledger.CheckInclusion(proof, th, seq, leaf); err != nil {
			t.Errorf("inclusion of %d in %d: %v", seq, size, err)
		}
		if ledger.CheckInclusion(proof, th, seq, ledger.LeafHash(append(ls[seq-1], 0))) == nil {
			t.Errorf("inclusion of %d in %d verifies for a changed record", seq, size)
		}
		old := rng.Uint64N(size + 1)
		cp, err := s.ConsistencyProof(old, size)
		if err != nil {
			t.Fatal(err)
		}
		if err := ledger.CheckConsistency(cp, ledger.TreeHead{Size: old, Root: roots[old]}, th); err != nil {
			t.Errorf("consistency %d to %d: %v", old, size, err)
		}
		if old > 0 && ledger.CheckConsistency(cp, ledger.TreeHead{Size: old, Root: roots[old-1]}, th) == nil {
			t.Errorf("consistency %d to %d verifies with another old root", old, size)
		}
	}
	if _, _, err := s.InclusionProof(head.Seq+1, 0); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("InclusionProof past the head: %v; want ErrNotFound", err)
	}
	if _, err := s.TreeRoot(head.Seq + 1); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("TreeRoot past the head: %v; want ErrNotFound", err)
	}
	// A record decodes from its leaf as it was appended.
	r, err := ledger.DecodeLeaf(7, ls[6])
	if want, _ := s.Get(7); err != nil || r.ID != want.ID || r.Event.GetUser() != want.Event.GetUser() {
		t.Errorf("DecodeLeaf(7) = %+v, %v; want the record at 7", r, err)
	}
	// The root survives a reopen, read-only and read-write.
	path := s.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{true, false} {
		s2, err := ledger.Open(path, &ledger.Options{ReadOnly: ro})
		if err != nil {
			t.Fatal(err)
		}
		if got := s2.Head().Root; got != head.Root {
			t.Errorf("reopened (read-only %v): root %x; want %x", ro, got, head.Root)
		}
		if !ro {
			if _, err := s2.Append(ctx, connected("late", "s")); err != nil {
				t.Fatal(err)
			}
			if got, want := s2.Head().Root, naiveRoot(leaves(t, s2)); got != want {
				t.Errorf("after an append on the reopened ledger: root %x; want %x", got, want)
			}
		}
		s2.Close()
	}
}

// closedCopy writes n records to a new ledger, closes it and returns its
// path.
func closedLedger(t *testing.T, n int, opts *ledger.Options) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := ledger.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	appendConcurrently(t, s, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// editFile runs fn on the bbolt file at path, as an editor outside the
// ledger would.
func editFile(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// downgrade makes the file at path what a format-2 ledger is: no tree, no
// checkpoints, no log id, the v2 magic. keepTree keeps all but the last
// value of the stored tree, as a build interrupted after a commit leaves it.
func downgrade(t *testing.T, path string, keepTree bool) {
	t.Helper()
	editFile(t, path, func(tx *bolt.Tx) error {
		if keepTree {
			c := tx.Bucket([]byte("tree")).Cursor()
			if k, _ := c.Last(); k != nil {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		} else if err := tx.DeleteBucket([]byte("tree")); err != nil {
			return err
		}
		if err := tx.DeleteBucket([]byte("checkpoints")); err != nil {
			return err
		}
		meta := tx.Bucket([]byte("meta"))
		if err := meta.Delete([]byte("log_id")); err != nil {
			return err
		}
		return meta.Put([]byte("magic"), []byte("sessionledger/ledger/v2"))
	})
}

// TestUpgradeFromV2 opens a format-2 file: read-only it works without a
// tree; read-write builds the tree (logging it), gives the log an id and
// makes the file format 3, with the root the records have. A build
// interrupted after some of its commits resumes.
func TestUpgradeFromV2(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("partial_tree=%v", keep), func(t *testing.T) {
			path := closedLedger(t, 200, nil)
			ro, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			want := ro.Head().Root
			ls := leaves(t, ro)
			ro.Close()
			downgrade(t, path, keep)

			ro, err = ledger.Open(path, &ledger.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			if ro.Format() != 2 || ro.LogID() != "" {
				t.Errorf("v2 file read-only: format %d, log id %q; want 2 and none", ro.Format(), ro.LogID())
			}
			if _, err := ro.TreeHead(); !errors.Is(err, ledger.ErrNoTree) {
				t.Errorf("TreeHead on a v2 file: %v; want ErrNoTree", err)
			}
			tc, err := ro.VerifyTree(ctx, []uint64{100}, nil)
			if err != nil || tc.Root != want || tc.Roots[100] != naiveRoot(ls[:100]) || tc.Broken != nil || tc.TreeDamage != nil {
				t.Errorf("VerifyTree on a v2 file: %+v, %v; want root %x", tc, err, want)
			}
			ro.Close()

			var logs bytes.Buffer
			s, err := ledger.Open(path, &ledger.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if s.Format() != 3 || ledger.ValidLogID(s.LogID()) != nil || s.Head().Root != want {
				t.Errorf("upgraded: format %d, log id %q, root %x; want 3, an id, root %x", s.Format(), s.LogID(), s.Head().Root, want)
			}
			for _, line := range []string{"building its Merkle tree", "Merkle tree built; the file is now format v3"} {
				if !strings.Contains(logs.String(), line) {
					t.Errorf("the log does not say %q:\n%s", line, logs.String())
				}
			}
			if _, err := s.Append(ctx, connected("after", "upgrade")); err != nil {
				t.Fatal(err)
			}
			id := s.LogID()
			s.Close()
			s, err = ledger.Open(path, &ledger.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.LogID() != id {
				t.Errorf("log id after reopen %q; want %q", s.LogID(), id)
			}
			ledgertest.Check(t, s)
		})
	}
}

func TestNewerFormatRefused(t *testing.T) {
	path := closedLedger(t, 3, nil)
	editFile(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("magic"), []byte("sessionledger/ledger/v9"))
	})
	for _, ro := range []bool{true, false} {
		_, err := ledger.Open(path, &ledger.Options{ReadOnly: ro})
		if !errors.Is(err, ledger.ErrNotLedger) || !strings.Contains(err.Error(), "format v9, newer than this build reads (v3)") {
			t.Errorf("open a v9 file (read-only %v): %v; want ErrNotLedger naming the versions", ro, err)
		}
	}
}

func TestLogID(t *testing.T) {
	path := closedLedger(t, 3, &ledger.Options{LogID: "example.com/cluster-7"})
	s, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.LogID() != "example.com/cluster-7" {
		t.Errorf("log id %q; want the one given at creation", s.LogID())
	}
	s.Close()
	if _, err := ledger.Open(path, &ledger.Options{LogID: "example.com/other"}); !errors.Is(err, ledger.ErrLogID) {
		t.Errorf("open with another log id: %v; want ErrLogID", err)
	}
	for _, bad := range []string{"with space", "a+b", strings.Repeat("x", 256)} {
		if _, err := ledger.Open(filepath.Join(t.TempDir(), "x.db"), &ledger.Options{LogID: bad}); err == nil {
			t.Errorf("log id %q accepted", bad)
		}
	}
	a, b := closedLedger(t, 1, nil), closedLedger(t, 1, nil)
	var ids []string
	for _, p := range []string{a, b} {
		s, err := ledger.Open(p, &ledger.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.LogID())
		s.Close()
	}
	if ids[0] == ids[1] || ledger.ValidLogID(ids[0]) != nil {
		t.Errorf("default log ids %q: want two different valid ids", ids)
	}
}

// TestTreeNamesTampering edits copies of a closed ledger with bbolt
// directly.
func TestTreeNamesTampering(t *testing.T) {
	t.Run("last records deleted", func(t *testing.T) {
		path := closedLedger(t, 100, nil)
		editFile(t, path, func(tx *bolt.Tx) error {
			for seq := uint64(91); seq <= 100; seq++ {
				if err := tx.Bucket([]byte("log")).Delete(binary.BigEndian.AppendUint64(nil, seq)); err != nil {
					return err
				}
			}
			return nil
		})
		if _, err := ledger.Open(path, nil); !errors.Is(err, ledger.ErrCorrupt) || !strings.Contains(err.Error(), "records after it were removed") {
			t.Errorf("read-write open: %v; want ErrCorrupt saying records were removed", err)
		}
		s, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if n, err := s.Verify(ctx, 0, 0, nil); err != nil || n != 90 {
			t.Errorf("the chain alone: %d, %v; want 90 records verified", n, err)
		}
		tc, err := s.VerifyTree(ctx, nil, nil)
		if err != nil || tc.TreeDamage == nil || !strings.Contains(tc.TreeDamage.Reason, "covers 100 records but the log ends at seq 90") {
			t.Errorf("VerifyTree: %+v, %v; want the stored tree to say 100 records", tc.TreeDamage, err)
		}
		fs, err := s.CrossCheck(ctx, 0)
		if err != nil || len(fs) == 0 {
			t.Fatalf("CrossCheck: %v, %v; want postings past the head", fs, err)
		}
		for _, f := range fs {
			if !strings.Contains(f.Problem, "past the log's head (seq 90)") {
				t.Errorf("finding %v; want it past the head", f)
			}
		}
	})
	t.Run("middle record rewritten, chain recomputed", func(t *testing.T) {
		path := closedLedger(t, 100, nil)
		rewriteWithChain(t, path, 40, func(v []byte) []byte { return regexp.MustCompile(`u[0-7]`).ReplaceAll(v, []byte("u9")) })
		s, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Verify(ctx, 0, 0, nil); err != nil {
			t.Fatalf("the chain was recomputed, so it verifies: %v", err)
		}
		tc, err := s.VerifyTree(ctx, nil, nil)
		if err != nil || tc.Broken != nil || tc.TreeDamage == nil || tc.TreeDamage.Seq != 40 {
			t.Errorf("VerifyTree: broken %v, tree %v, %v; want the stored tree to name seq 40", tc.Broken, tc.TreeDamage, err)
		}
		fs, _ := s.CrossCheck(ctx, 0)
		if len(fs) == 0 || !strings.Contains(fmt.Sprint(fs), `points at a record whose user is "u9"`) {
			t.Errorf("CrossCheck: %v; want the user index to disagree at seq 40", fs)
		}
		after, _ := s.CrossCheckAfter(ctx, &tc, 0)
		if fmt.Sprint(after) != fmt.Sprint(fs) {
			t.Errorf("CrossCheckAfter(VerifyTree) = %v; want CrossCheck's %v", after, fs)
		}
	})
}

// rewriteWithChain changes the record at seq with edit and recomputes the
// chain hashes from there to the end, as an editor who knows the format
// would.
func rewriteWithChain(t *testing.T, path string, seq uint64, edit func([]byte) []byte) {
	t.Helper()
	editFile(t, path, func(tx *bolt.Tx) error {
		log := tx.Bucket([]byte("log"))
		prev := log.Get(binary.BigEndian.AppendUint64(nil, seq-1))
		var ph [32]byte
		copy(ph[:], prev)
		c := log.Cursor()
		type kv struct{ k, v []byte }
		var recs []kv
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, seq)); k != nil; k, v = c.Next() {
			recs = append(recs, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
		}
		recs[0].v = edit(recs[0].v)
		for _, r := range recs {
			h := sha256.Sum256(append(ph[:], r.v[32:]...))
			copy(r.v, h[:])
			ph = h
			if err := log.Put(r.k, r.v); err != nil {
				return err
			}
		}
		return nil
	})
}

func TestCheckpointsStored(t *testing.T) {
	s := ledgertest.Open(t, nil)
	if _, ok, err := s.LastCheckpoint(); ok || err != nil {
		t.Fatalf("LastCheckpoint of a new ledger: %v, %v; want none", ok, err)
	}
	appendConcurrently(t, s, 20)
	th, _ := s.TreeHead()
	if err := s.PutCheckpoint(ctx, ledger.TreeHead{Size: th.Size, Root: ledger.Hash{1}}, []byte("x")); err == nil {
		t.Errorf("PutCheckpoint with a wrong root: accepted")
	}
	if err := s.PutCheckpoint(ctx, th, []byte("signed note")); err != nil {
		t.Fatal(err)
	}
	cp, ok, err := s.LastCheckpoint()
	if err != nil || !ok || cp.TreeHead != th || string(cp.Signed) != "signed note" {
		t.Errorf("LastCheckpoint = %+v, %v, %v; want %+v", cp, ok, err, th)
	}
}

func TestCrossCheckOffsetsAndCheckpoints(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendConcurrently(t, s, 30)
	th, _ := s.TreeHead()
	if err := s.PutCheckpoint(context.Background(), th, []byte("note")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	editFile(t, path, func(tx *bolt.Tx) error {
		// The group read up to seq 40 and a checkpoint signed 31 records;
		// the log now ends at 30: someone removed the rest.
		if err := tx.Bucket([]byte("offsets")).Put([]byte("\x01tg"), binary.BigEndian.AppendUint64(nil, 41)); err != nil {
			return err
		}
		return tx.Bucket([]byte("checkpoints")).Put(binary.BigEndian.AppendUint64(nil, 31), make([]byte, 40))
	})
	ro, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	fs, err := ro.CrossCheck(ctx, 0)
	got := fmt.Sprint(fs)
	if err != nil || len(fs) != 2 || !strings.Contains(got, `consumer group "g" of topic "t": seq 40: has read up to seq 40, past the log's head (seq 30)`) ||
		!strings.Contains(got, "signed checkpoint of size 31: seq 31: is past the log's head (seq 30)") {
		t.Errorf("CrossCheck = %v, %v", got, err)
	}
}
