package audit

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"

	"github.com/sessionledger/sessionledger/ledger"
)

// CheckFile looks at the file at path before the ledger opens it, for what
// makes that open fail obscurely or crash: a directory, something that is
// not a regular file, an empty file, and a file that is not a bbolt
// database or is shorter than its bbolt header says (a truncated copy, on
// which bbolt maps pages the file does not have, and the first read of one
// faults). Such an error names path and matches ledger.ErrNotLedger. A file
// that passes may still not be a ledger: ledger.Open says so. A missing
// file gives the os.Stat error.
//
// It reads bbolt's two meta pages, the only part of bbolt's format it
// knows: each is a 16-byte page header and then magic, version, page size,
// flags, root bucket (16 bytes), freelist page, high-water page id, txid
// and an FNV-64a checksum of the fields before it, in native byte order.
// The file must hold every page below the high-water page id.
func CheckFile(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return err
	case fi.IsDir():
		return notLedger("%s is a directory, not a ledger file", path)
	case !fi.Mode().IsRegular():
		return notLedger("%s is not a regular file, so not a ledger file", path)
	case fi.Size() == 0:
		return notLedger("%s is empty: not a ledger file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	m, ok := newestMeta(f)
	if !ok {
		return notLedger("%s is not a ledger file (truncated or not bbolt): it has no bbolt header", path)
	}
	if need := int64(m.pgid) * int64(m.pageSize); fi.Size() < need {
		return notLedger("%s is not a ledger file (truncated or not bbolt): %d bytes, but its bbolt header says %d", path, fi.Size(), need)
	}
	return nil
}

// fileError is a CheckFile error: its message alone, matching
// ledger.ErrNotLedger.
type fileError struct{ msg string }

func (e *fileError) Error() string { return e.msg }
func (e *fileError) Unwrap() error { return ledger.ErrNotLedger }

func notLedger(format string, args ...any) error {
	return &fileError{fmt.Sprintf(format, args...)}
}

// boltMeta is what CheckFile reads of a bbolt meta page.
type boltMeta struct {
	pageSize   uint32
	pgid, txid uint64
}

const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	boltPageHeader  = 16
	boltMetaSize    = 64 // the checksum is its last 8 bytes
	boltMinPageSize = 1024
)

// newestMeta returns the valid meta page with the highest txid, as bbolt
// opens it. The second meta page sits one page in; without a valid first
// one, the page size is not known and the sizes bbolt uses are tried.
func newestMeta(r io.ReaderAt) (boltMeta, bool) {
	m0, ok0 := readMeta(r, 0)
	sizes := []int64{int64(os.Getpagesize()), 4096, 8192, 16384, 32768, 65536}
	if ok0 {
		sizes = []int64{int64(m0.pageSize)}
	}
	for _, size := range sizes {
		if m1, ok1 := readMeta(r, size); ok1 && (!ok0 || m1.txid > m0.txid) {
			return m1, true
		}
	}
	return m0, ok0
}

func readMeta(r io.ReaderAt, off int64) (boltMeta, bool) {
	var b [boltPageHeader + boltMetaSize]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return boltMeta{}, false
	}
	m := b[boltPageHeader:]
	le := binary.NativeEndian
	h := fnv.New64a()
	h.Write(m[:boltMetaSize-8])
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion || le.Uint64(m[boltMetaSize-8:]) != h.Sum64() {
		return boltMeta{}, false
	}
	meta := boltMeta{pageSize: le.Uint32(m[8:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}
	if meta.pageSize < boltMinPageSize {
		return boltMeta{}, false
	}
	return meta, true
}
