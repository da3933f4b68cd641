package ledger_test

import (
	"encoding/binary"
	"os"
	"testing"

	"github.com/sessionledger/sessionledger/ledger"
)

// TestVerifyDamagedPages flips bytes of every branch and leaf page of a
// ledger file — page id and flags, and the first element's key offset or
// size and (in a branch) the high bytes of its child's page id: Open
// (read-only) and Verify must return an error or a result, never let
// bbolt's assertion panics or a fault on its memory map escape.
//
// The page count, overflow and low page-id bytes are left alone: they can
// make bbolt's tree point back into itself, and bbolt's cursor then loops,
// growing its stack until memory runs out (see Verify's doc comment).
func TestVerifyDamagedPages(t *testing.T) {
	orig := tamperFixture(t)
	data, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := os.Getpagesize() // bbolt's page size
	offsets := []int{}
	for page := 2; (page+1)*pageSize <= len(data); page++ {
		p := data[page*pageSize:]
		if binary.LittleEndian.Uint64(p) != uint64(page) || (p[8] != 0x01 && p[8] != 0x02) {
			continue // not a branch or leaf page of the tree: free or past the end
		}
		for _, r := range [][2]int{{0, 10}, {20, 24}, {28, 32}} {
			for off := r[0]; off < r[1]; off++ {
				offsets = append(offsets, page*pageSize+off)
			}
		}
	}
	if len(offsets) == 0 {
		t.Fatalf("no branch or leaf page found in %d bytes at page size %d: nothing to flip", len(data), pageSize)
	}
	if testing.Short() {
		var some []int
		for i := 0; i < len(offsets); i += 4 {
			some = append(some, offsets[i])
		}
		offsets = some
	}
	path := orig + ".flipped"
	caught := 0
	for _, off := range offsets {
		b := append([]byte(nil), data...)
		b[off] ^= 0xff
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("offset %d: panic: %v", off, r)
				}
			}()
			s, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
			if err != nil {
				caught++
				return
			}
			defer s.Close()
			if _, err := s.Verify(ctx, 0, 0, nil); err != nil {
				caught++
			}
		}()
	}
	if caught == 0 {
		t.Errorf("%d byte flips, none reported by Open or Verify; want the flips of the log's pages found", len(offsets))
	}
	t.Logf("%d byte flips, %d reported by Open or Verify (the rest changed nothing Open and Verify read: index pages, branch keys)", len(offsets), caught)
}
