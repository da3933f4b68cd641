package ledger_test

import (
	"encoding/binary"
	"testing"

	"github.com/sessionledger/sessionledger/ledger"
)

// FuzzDecodeRecord feeds arbitrary keys and values to the record decoder:
// it must return a record or an error, never panic. The seed corpus in
// testdata/fuzz/FuzzDecodeRecord holds real stored values.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(binary.BigEndian.AppendUint64(nil, 1), []byte{})
	f.Add([]byte{1, 2, 3}, make([]byte, 40))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		r, err := ledger.DecodeRecord(key, value)
		if err == nil && r == nil {
			t.Fatal("nil record without an error")
		}
		if err == nil && r.Seq != binary.BigEndian.Uint64(key) {
			t.Fatalf("decoded seq %d from key %x", r.Seq, key)
		}
	})
}
