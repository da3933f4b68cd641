package ledger

import (
	"encoding/hex"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// RFC 6962 test vectors, as the Certificate Transparency and
// transparency-dev/merkle test suites give them: eight leaves, the root of
// every tree size, and inclusion and consistency proofs.
var (
	vectorLeaves = []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"}
	vectorRoots  = []string{
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
	// leaf index (0-based), tree size, audit path
	vectorInclusion = []struct {
		index, size int64
		proof       []string
	}{
		{0, 1, nil},
		{0, 8, []string{"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
		{5, 8, []string{"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
		{2, 3, []string{"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
		{1, 5, []string{"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
	}
	// old size, new size, consistency proof
	vectorConsistency = []struct {
		old, new int64
		proof    []string
	}{
		{1, 1, nil},
		{1, 8, []string{"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
		{6, 8, []string{"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
		{2, 5, []string{"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
		{6, 7, []string{"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
	}
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unhexHash(t *testing.T, s string) tlog.Hash {
	var h tlog.Hash
	copy(h[:], unhex(t, s))
	return h
}

// TestTreeVectors stores the RFC 6962 vectors' leaves the way the writer
// does (the frontier computes the stored hashes, one bbolt value per
// commit; here commits of 1, 2 and 5 leaves) and checks every root, proof
// and the library's verifier against the vectors.
func TestTreeVectors(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "tree.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var f frontier
	for _, commit := range [][]string{vectorLeaves[:1], vectorLeaves[1:3], vectorLeaves[3:]} {
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketTree)
			if err != nil {
				return err
			}
			first := f.n
			var val []byte
			for _, l := range commit {
				hs, err := f.append(tlog.RecordHash(unhex(t, l)))
				if err != nil {
					return err
				}
				for _, h := range hs {
					val = append(val, h[:]...)
				}
			}
			return b.Put(seqKey(uint64(tlog.StoredHashIndex(0, first))), val)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	err = db.View(func(tx *bolt.Tx) error {
		r := bucketHashes{tx.Bucket(bucketTree)}
		if n, err := storedCount(tx.Bucket(bucketTree)); err != nil || n != tlog.StoredHashCount(8) {
			t.Errorf("stored hashes: %d, %v; want %d", n, err, tlog.StoredHashCount(8))
		}
		for size, want := range vectorRoots {
			got, err := tlog.TreeHash(int64(size), r)
			if err != nil || got != unhexHash(t, want) {
				t.Errorf("root of size %d: got %v, %v; want %s", size, got, err, want)
			}
			fr, err := loadFrontier(int64(size), r)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := fr.root(); err != nil || Hash(unhexHash(t, want)) != got {
				t.Errorf("frontier loaded at size %d: root %x, %v; want %s", size, got, err, want)
			}
		}
		for _, v := range vectorInclusion {
			p, err := tlog.ProveRecord(v.size, v.index, r)
			if err != nil {
				t.Fatal(err)
			}
			if len(p) != len(v.proof) {
				t.Errorf("inclusion %d in %d: got %d hashes; want %d", v.index, v.size, len(p), len(v.proof))
				continue
			}
			for i := range p {
				if p[i] != unhexHash(t, v.proof[i]) {
					t.Errorf("inclusion %d in %d: hash %d: got %v; want %s", v.index, v.size, i, p[i], v.proof[i])
				}
			}
			root := unhexHash(t, vectorRoots[v.size])
			leaf := tlog.RecordHash(unhex(t, vectorLeaves[v.index]))
			if err := tlog.CheckRecord(p, v.size, root, v.index, leaf); err != nil {
				t.Errorf("inclusion %d in %d does not verify: %v", v.index, v.size, err)
			}
			if err := tlog.CheckRecord(p, v.size, root, v.index, tlog.RecordHash([]byte("other"))); err == nil {
				t.Errorf("inclusion %d in %d verifies for another leaf", v.index, v.size)
			}
		}
		for _, v := range vectorConsistency {
			p, err := tlog.ProveTree(v.new, v.old, r)
			if err != nil {
				t.Fatal(err)
			}
			if len(p) != len(v.proof) {
				t.Errorf("consistency %d to %d: got %d hashes; want %d", v.old, v.new, len(p), len(v.proof))
				continue
			}
			for i := range p {
				if p[i] != unhexHash(t, v.proof[i]) {
					t.Errorf("consistency %d to %d: hash %d: got %v; want %s", v.old, v.new, i, p[i], v.proof[i])
				}
			}
			if err := tlog.CheckTree(p, v.new, unhexHash(t, vectorRoots[v.new]), v.old, unhexHash(t, vectorRoots[v.old])); err != nil {
				t.Errorf("consistency %d to %d does not verify: %v", v.old, v.new, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTreeSizeOf(t *testing.T) {
	for n := int64(0); n < 2000; n++ {
		got, ok := treeSizeOf(tlog.StoredHashCount(n))
		if !ok || got != n {
			t.Fatalf("treeSizeOf(StoredHashCount(%d)) = %d, %v; want %d, true", n, got, ok, n)
		}
	}
	if _, ok := treeSizeOf(tlog.StoredHashCount(3) + 1); ok {
		t.Errorf("treeSizeOf accepts a count no tree has")
	}
}

func TestLeafHasherMatchesTlog(t *testing.T) {
	var l leafHasher
	for _, d := range [][]byte{nil, {0}, []byte("a record"), make([]byte, 1000)} {
		if got, want := l.leaf(d), tlog.RecordHash(d); got != want {
			t.Errorf("leaf(%q) = %v; want tlog's %v", d, got, want)
		}
	}
}
