package ledger_test

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/sessionledger/sessionledger/ledger"
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
