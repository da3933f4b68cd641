package ledger_test

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

// tamperFixture writes a 100-record ledger, closes it and returns a copy of
// the file that the test may damage.
func tamperFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig.db")
	s, err := ledger.Open(orig, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if _, err := s.Append(ctx, connected("u", "s")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "copy.db")
	src, _ := os.Open(orig)
	dst, _ := os.Create(cp)
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	dst.Close()
	return cp
}

// damage edits the log bucket of the bbolt file at path directly.
func damage(t *testing.T, path string, fn func(log *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return fn(tx.Bucket([]byte("log"))) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
}

func key(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func verifyFile(t *testing.T, path string, from, to uint64) error {
	t.Helper()
	s, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Verify(ctx, from, to, nil)
	return err
}

func wantBreakAt(t *testing.T, err error, seq uint64) {
	t.Helper()
	var ce *ledger.ChainError
	if !errors.As(err, &ce) {
		t.Fatalf("verify: got %v; want a ChainError at seq %d", err, seq)
	}
	if ce.Seq != seq {
		t.Fatalf("verify: got first bad seq %d (%s); want %d", ce.Seq, ce.Reason, seq)
	}
}

func TestVerifyIntact(t *testing.T) {
	path := tamperFixture(t)
	if err := verifyFile(t, path, 0, 0); err != nil {
		t.Fatalf("intact ledger: %v", err)
	}
	if err := verifyFile(t, path, 40, 60); err != nil {
		t.Fatalf("intact range: %v", err)
	}
}

func TestVerifyNamesFirstBadSeq(t *testing.T) {
	cases := []struct {
		name string
		fn   func(log *bolt.Bucket) error
		want uint64
	}{
		{"byte changed in body", func(log *bolt.Bucket) error {
			v := append([]byte(nil), log.Get(key(50))...)
			v[len(v)-3] ^= 0x01
			return log.Put(key(50), v)
		}, 50},
		{"byte changed in stored hash", func(log *bolt.Bucket) error {
			v := append([]byte(nil), log.Get(key(73))...)
			v[5] ^= 0x80
			return log.Put(key(73), v)
		}, 73},
		{"record deleted", func(log *bolt.Bucket) error { return log.Delete(key(50)) }, 50},
		{"first record deleted", func(log *bolt.Bucket) error { return log.Delete(key(1)) }, 1},
		{"record moved to another key", func(log *bolt.Bucket) error {
			v := append([]byte(nil), log.Get(key(30))...)
			if err := log.Put(key(31), v); err != nil {
				return err
			}
			return nil
		}, 31},
		{"record truncated", func(log *bolt.Bucket) error { return log.Put(key(12), []byte{1, 2, 3}) }, 12},
		// Keys that are not 8 bytes: a scan must not index past their end.
		{"7-byte key before the first record", func(log *bolt.Bucket) error { return log.Put(make([]byte, 7), []byte("x")) }, 1},
		{"9-byte key between records", func(log *bolt.Bucket) error { return log.Put(append(key(50), 0), log.Get(key(50))) }, 51},
		{"1-byte key", func(log *bolt.Bucket) error { return log.Put([]byte{0}, []byte("x")) }, 1},
		{"seq 0", func(log *bolt.Bucket) error { return log.Put(key(0), log.Get(key(1))) }, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := tamperFixture(t)
			damage(t, path, tc.fn)
			wantBreakAt(t, verifyFile(t, path, 0, 0), tc.want)
		})
	}
}

// TestScanBadLogKeyIsCorrupt: Scan and ScanRaw meeting a log key that is not
// an 8-byte seq end with ErrCorrupt after the records before it, never a
// panic.
func TestScanBadLogKeyIsCorrupt(t *testing.T) {
	path := tamperFixture(t)
	damage(t, path, func(log *bolt.Bucket) error { return log.Put(append(key(50), 0xff), []byte("x")) })
	s, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n uint64
	err = s.Scan(ctx, 0, 0, func(r *ledger.Record) error { n = r.Seq; return nil })
	if !errors.Is(err, ledger.ErrCorrupt) || n != 50 {
		t.Fatalf("scan: got last seq %d, %v; want 50 then ErrCorrupt", n, err)
	}
	n = 0
	err = s.ScanRaw(ctx, 0, 0, func(r *ledger.RawRecord) error { n = r.Seq; return nil })
	if !errors.Is(err, ledger.ErrCorrupt) || n != 50 {
		t.Fatalf("scan raw: got last seq %d, %v; want 50 then ErrCorrupt", n, err)
	}
}

// TestLastRecordDamaged: a damaged newest record must not stop Verify from
// running. A read-only Open takes the head seq from the key and Verify names
// it; a read-write Open refuses, naming the seq and what to do.
func TestLastRecordDamaged(t *testing.T) {
	cases := []struct {
		name string
		fn   func(log *bolt.Bucket) error
		want uint64
	}{
		{"truncated", func(log *bolt.Bucket) error { return log.Put(key(100), []byte{1, 2, 3}) }, 100},
		{"byte changed", func(log *bolt.Bucket) error {
			v := append([]byte(nil), log.Get(key(100))...)
			v[len(v)-1] ^= 0x40
			return log.Put(key(100), v)
		}, 100},
		{"chain intact, protobuf broken", func(log *bolt.Bucket) error {
			// A writer that recomputes the hash: only decoding can tell.
			v := append([]byte(nil), log.Get(key(100))...)
			v = append(v, 0xff) // a dangling tag
			h := sha256.Sum256(append(append([]byte(nil), log.Get(key(99))[:32]...), v[32:]...))
			copy(v, h[:])
			return log.Put(key(100), v)
		}, 100},
		{"7-byte key after the last record", func(log *bolt.Bucket) error {
			return log.Put([]byte{0, 0, 0, 0, 0, 0, 1}, []byte("x"))
		}, 101},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := tamperFixture(t)
			damage(t, path, tc.fn)
			ro, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
			if err != nil {
				t.Fatalf("read-only open: got %v; want it to open so Verify can run", err)
			}
			if h := ro.Head(); h.Seq != 100 {
				t.Errorf("read-only head: got seq %d; want 100", h.Seq)
			}
			_, err = ro.Verify(ctx, 0, 0, nil)
			ro.Close()
			wantBreakAt(t, err, tc.want)
			_, err = ledger.Open(path, nil)
			if err == nil {
				t.Fatal("read-write open of a ledger with a damaged end: got nil error")
			}
			msg := err.Error()
			if !errors.Is(err, ledger.ErrCorrupt) || !strings.Contains(msg, fmt.Sprintf("seq %d", tc.want)) ||
				!strings.Contains(msg, "verify") || !strings.Contains(msg, "backup") {
				t.Fatalf("read-write open: got %q; want ErrCorrupt naming seq %d, verify and a backup", msg, tc.want)
			}
		})
	}
}

// TestVerifyProgressPanicIsTheCallers: a panic in the progress callback is
// the caller's bug, not damage to the file: it reaches the caller as it
// came, at a chunk's call (inside a read transaction, which is released)
// and at the final one, instead of becoming "ErrCorrupt ... bbolt page
// structures are damaged".
func TestVerifyProgressPanicIsTheCallers(t *testing.T) {
	type callerBug struct{ seq uint64 }
	verifyPanics := func(s *ledger.Store) (r any, err error) {
		defer func() { r = recover() }()
		_, err = s.Verify(ctx, 0, 0, func(seq uint64) { panic(callerBug{seq}) })
		return nil, err
	}
	for _, tc := range []struct {
		name    string
		records int
		first   uint64 // the seq of the first progress call
	}{
		{"final call", 1, 1},       // the only call is the final one
		{"chunk call", 4097, 4096}, // a chunk's call comes first
	} {
		s := ledgertest.Open(t, nil)
		evs := make([]*eventpb.Event, tc.records)
		for i := range evs {
			evs[i] = connected("u", "s")
		}
		if _, err := s.Append(ctx, evs...); err != nil {
			t.Fatal(err)
		}
		r, err := verifyPanics(s)
		if got, ok := r.(callerBug); !ok || got.seq != tc.first {
			t.Errorf("%s: Verify gave panic %v, error %v; want the callback's own panic at seq %d", tc.name, r, err, tc.first)
		}
		if txs := s.OpenReadTxs(); txs != 0 {
			t.Errorf("%s: %d read transactions left open", tc.name, txs)
		}
		if _, err := s.Verify(ctx, 0, 0, func(uint64) {}); err != nil {
			t.Errorf("%s: Verify after the callback's panic: %v", tc.name, err)
		}
	}
}

func TestCheckNext(t *testing.T) {
	for _, c := range []struct {
		next, seq uint64
		want      string // "" for no error
		after     uint64 // next afterwards
	}{
		{5, 5, "", 6},
		{5, 6, "seq 5 missing from the log", 5},
		{5, 8, "seq 5 to 7 missing from the log", 5},
		{5, 3, "seq 3 read after seq 4", 5},
	} {
		next := c.next
		err := ledger.CheckNext(&next, c.seq)
		switch {
		case c.want == "" && err != nil, c.want != "" && (!errors.Is(err, ledger.ErrCorrupt) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("CheckNext(%d, %d) = %v; want %q", c.next, c.seq, err, c.want)
		case next != c.after:
			t.Errorf("CheckNext(%d, %d) left next at %d; want %d", c.next, c.seq, next, c.after)
		}
	}
}
