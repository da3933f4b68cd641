package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/audit/audittest"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/checkpoint"
	"github.com/sessionledger/sessionledger/ledger/signkey"
)

// signed is a copy of the fixture with signed checkpoints, as hubd leaves
// its data folder: the ledger, the key, and checkpoint files saved off it.
type signed struct {
	data, db string
	vkey     string
	// cps are checkpoint files of the sizes asked for, saved outside data.
	cps map[uint64]string
}

// signFixture copies the fixture into a data folder, creates the signing
// key there and signs checkpoints of the given tree sizes (also stored in
// the ledger, as hubd does).
func signFixture(t *testing.T, sizes ...uint64) *signed {
	t.Helper()
	s := &signed{data: t.TempDir(), cps: map[uint64]string{}}
	s.db = filepath.Join(s.data, "ledger.db")
	b, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.db, b, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := ledger.Open(s.db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key, _, err := signkey.LoadOrCreateKey(s.data, st.LogID())
	if err != nil {
		t.Fatal(err)
	}
	if s.vkey, err = signkey.VerifierKey(filepath.Join(s.data, signkey.KeyFile)); err != nil {
		t.Fatal(err)
	}
	saved := t.TempDir()
	for _, size := range sizes {
		s.cps[size] = filepath.Join(saved, checkpoint.FileName(size))
		signAt(t, st, key, size, s.cps[size])
	}
	return s
}

// signAt signs the tree of size records of st with key, stores the
// checkpoint in st and writes it to file.
func signAt(t *testing.T, st *ledger.Store, key note.Signer, size uint64, file string) []byte {
	t.Helper()
	root, err := st.TreeRoot(size)
	if err != nil {
		t.Fatal(err)
	}
	th := ledger.TreeHead{Size: size, Root: root}
	n, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: st.LogID(), TreeHead: th}, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutCheckpoint(t.Context(), th, n); err != nil {
		t.Fatal(err)
	}
	if file != "" {
		if err := os.WriteFile(file, n, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// edit runs fn on the bbolt file at path, as the "ten-line bbolt program"
// of an editor outside the ledger.
func edit(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
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

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// recomputeAll makes everything in the file that could give away an edit
// of the log agree with it again, as a careful editor would: the chain
// hashes, the Merkle tree, the indexes (one tail block), the checkpoints
// stored in the file, consumer-group offsets and projection snapshots.
func recomputeAll(tx *bolt.Tx) error {
	log := tx.Bucket([]byte("log"))
	var prev [32]byte
	var leaves [][]byte
	type post struct {
		kind byte
		name string
	}
	postings := map[post][]uint64{}
	var order []post
	c := log.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		v = bytes.Clone(v)
		h := sha256Sum(append(prev[:], v[32:]...))
		copy(v, h[:])
		prev = h
		if err := log.Put(bytes.Clone(k), v); err != nil {
			return err
		}
		leaves = append(leaves, v[32:])
		seq := binary.BigEndian.Uint64(k)
		r, err := ledger.DecodeRecord(k, v)
		if err != nil {
			return err
		}
		for _, p := range []post{{'t', r.Topic}, {'u', r.Event.GetUser()}, {'s', r.Event.GetSession()}} {
			if p.name == "" {
				continue
			}
			if postings[p] == nil {
				order = append(order, p)
			}
			postings[p] = append(postings[p], seq)
		}
	}
	var block []byte
	for _, p := range order {
		var list []byte
		last := uint64(0)
		for _, s := range postings[p] {
			list = binary.AppendUvarint(list, s-last)
			last = s
		}
		block = append(block, p.kind)
		block = protowire.AppendBytes(block, []byte(p.name))
		block = protowire.AppendBytes(block, list)
	}
	for _, b := range []string{"idx_user", "idx_session", "idx_topic", "idx_tail", "tree", "checkpoints", "offsets"} {
		if err := tx.DeleteBucket([]byte(b)); err != nil {
			return err
		}
		if _, err := tx.CreateBucket([]byte(b)); err != nil {
			return err
		}
	}
	if err := tx.Bucket([]byte("idx_tail")).Put(seqKey(uint64(len(leaves))), block); err != nil {
		return err
	}
	var stored []byte
	hashes := map[int64]tlog.Hash{}
	for i, l := range leaves {
		hs, err := tlog.StoredHashes(int64(i), l, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(idx))
			for j, x := range idx {
				out[j] = hashes[x]
			}
			return out, nil
		}))
		if err != nil {
			return err
		}
		for j, h := range hs {
			hashes[tlog.StoredHashIndex(0, int64(i))+int64(j)] = h
			stored = append(stored, h[:]...)
		}
	}
	if err := tx.Bucket([]byte("tree")).Put(seqKey(0), stored); err != nil {
		return err
	}
	blobs := tx.Bucket([]byte("blobs"))
	var drop [][]byte
	_ = blobs.ForEach(func(k, _ []byte) error {
		if strings.HasPrefix(string(k), "projections/") {
			drop = append(drop, bytes.Clone(k))
		}
		return nil
	})
	for _, k := range drop {
		if err := blobs.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// TestVerifyCheckpointTamper: copies edited as an attacker would, each
// checked against a checkpoint saved before the edit.
func TestVerifyCheckpointTamper(t *testing.T) {
	t.Run("untouched", func(t *testing.T) {
		s := signFixture(t, 21, 10)
		r := run(t, nil, "--db", s.db, "verify", "--checkpoint", s.cps[10], "--checkpoint", s.cps[21], "--key", s.vkey)
		if r.code != 0 || !strings.Contains(r.stdout, "size 21: ok") || !strings.Contains(r.stdout, "size 10: ok") || r.stderr != "" {
			t.Fatalf("exit %d\n%s%s; want both checkpoints ok, no warning", r.code, r.stdout, r.stderr)
		}
		// A directory stands for its checkpoint files; without --key the
		// key in the data folder is used, with a warning.
		r = run(t, nil, "--db", s.db, "--data", s.data, "verify", "--checkpoint", filepath.Dir(s.cps[10]), "--json")
		var v verifyJSON
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 0 || !v.Intact || len(v.Checkpoints) != 2 || v.KeySource == "--key" {
			t.Fatalf("exit %d %+v %v\n%s", r.code, v, err, r.stderr)
		}
		if !strings.Contains(r.stderr, "on the host under audit: pass --key") {
			t.Errorf("no warning about the key's source: %q", r.stderr)
		}
	})
	t.Run("last 10 records deleted, chain, head, indexes and tree recomputed", func(t *testing.T) {
		s := signFixture(t, 21)
		edit(t, s.db, func(tx *bolt.Tx) error {
			for seq := uint64(12); seq <= 21; seq++ {
				if err := tx.Bucket([]byte("log")).Delete(seqKey(seq)); err != nil {
					return err
				}
			}
			return recomputeAll(tx)
		})
		// The file alone looks whole.
		r := run(t, nil, "--db", s.db, "verify")
		if r.code != 0 || !strings.Contains(r.stdout, "intact: seq 1 to 11") {
			t.Fatalf("plain verify of a carefully truncated copy: exit %d\n%s%s; want it to look intact", r.code, r.stdout, r.stderr)
		}
		r = run(t, nil, "--db", s.db, "verify", "--checkpoint", s.cps[21], "--key", s.vkey)
		wantVerifyFail(t, r, "size 21: FAILED: the log holds 11 records, the checkpoint 21: records 12 to 21 were removed")
	})
	t.Run("last 10 records deleted, nothing else", func(t *testing.T) {
		s := signFixture(t, 21)
		edit(t, s.db, func(tx *bolt.Tx) error {
			for seq := uint64(12); seq <= 21; seq++ {
				if err := tx.Bucket([]byte("log")).Delete(seqKey(seq)); err != nil {
					return err
				}
			}
			return nil
		})
		// Even without a checkpoint kept elsewhere, what else the file holds
		// gives it away.
		r := run(t, nil, "--db", s.db, "verify")
		wantVerifyFail(t, r, "covers 21 records but the log ends at seq 11", `idx_user "`, "past the log's head (seq 11)",
			"signed checkpoint of size 21: seq 21: is past the log's head", "projection snapshot")
	})
	t.Run("middle record rewritten, whole chain and tree recomputed", func(t *testing.T) {
		s := signFixture(t, 21)
		edit(t, s.db, func(tx *bolt.Tx) error {
			log := tx.Bucket([]byte("log"))
			v := bytes.Replace(bytes.Clone(log.Get(seqKey(8))), []byte("ops-bob"), []byte("ops-eve"), 1)
			if err := log.Put(seqKey(8), v); err != nil {
				return err
			}
			return recomputeAll(tx)
		})
		r := run(t, nil, "--db", s.db, "verify")
		if r.code != 0 {
			t.Fatalf("plain verify of a carefully rewritten copy: exit %d\n%s; want it to look intact", r.code, r.stdout)
		}
		r = run(t, nil, "--db", s.db, "verify", "--checkpoint", s.cps[21], "--key", s.vkey)
		wantVerifyFail(t, r, "size 21: FAILED: the tree of the log's first 21 records has root", "a record at or before seq 21 was changed")
	})
	t.Run("middle record rewritten, chain recomputed, tree not", func(t *testing.T) {
		s := signFixture(t, 21)
		edit(t, s.db, func(tx *bolt.Tx) error {
			log := tx.Bucket([]byte("log"))
			v := bytes.Replace(bytes.Clone(log.Get(seqKey(8))), []byte("ops-bob"), []byte("ops-eve"), 1)
			if err := log.Put(seqKey(8), v); err != nil {
				return err
			}
			var prev [32]byte
			c := log.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				v = bytes.Clone(v)
				h := sha256Sum(append(prev[:], v[32:]...))
				copy(v, h[:])
				prev = h
				if err := log.Put(bytes.Clone(k), v); err != nil {
					return err
				}
			}
			return nil
		})
		r := run(t, nil, "--db", s.db, "verify")
		wantVerifyFail(t, r, "the stored Merkle leaf hash of seq 8 does not match the record's bytes")
	})
	t.Run("checkpoint signed by another key", func(t *testing.T) {
		s := signFixture(t, 21)
		other := signFixture(t)
		r := run(t, nil, "--db", s.db, "verify", "--checkpoint", s.cps[21], "--key", other.vkey)
		wantVerifyFail(t, r, "size 21: FAILED: checkpoint signature does not verify: no signature by")
	})
	t.Run("checkpoint root edited", func(t *testing.T) {
		s := signFixture(t, 21)
		b, _ := os.ReadFile(s.cps[21])
		lines := strings.SplitN(string(b), "\n", 4)
		root := []byte(lines[2])
		// Another base64 letter, so the root still parses and only the
		// signature can tell: XOR-ing bits could leave the alphabet.
		if root[0] == 'A' {
			root[0] = 'B'
		} else {
			root[0] = 'A'
		}
		lines[2] = string(root)
		if err := os.WriteFile(s.cps[21], []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		r := run(t, nil, "--db", s.db, "verify", "--checkpoint", s.cps[21], "--key", s.vkey)
		wantVerifyFail(t, r, "FAILED: checkpoint signature does not verify", "changed after it was signed")
	})
	t.Run("checkpoint of another log", func(t *testing.T) {
		s := signFixture(t, 21)
		other := filepath.Join(t.TempDir(), "other.db")
		audittest.Build(t, other)
		r := run(t, nil, "--db", other, "verify", "--checkpoint", s.cps[21], "--key", s.vkey)
		wantVerifyFail(t, r, "FAILED: the checkpoint is of log")
	})
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

func wantVerifyFail(t *testing.T, r result, want ...string) {
	t.Helper()
	if r.code != exitIntegrity {
		t.Errorf("exit %d; want %d\n%s%s", r.code, exitIntegrity, r.stdout, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "NOT INTACT") {
		t.Errorf("output does not start NOT INTACT:\n%s", r.stdout)
	}
	for _, w := range want {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("output does not say %q:\n%s", w, r.stdout)
		}
	}
}

// TestProveAndCheckProof: a bundle made from a file and from a live hub
// verifies with the key alone; an edited one does not.
func TestProveAndCheckProof(t *testing.T) {
	s := signFixture(t, 21, 10)
	dir := t.TempDir()
	bundle := filepath.Join(dir, "kick.proof.json")
	r := run(t, nil, "--db", s.db, "prove", "--seq", "8", "--checkpoint", s.cps[10], "--out", bundle)
	if r.code != 0 || !strings.Contains(r.stdout, "proof of seq 8 in the tree of size 10") {
		t.Fatalf("prove: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, nil, "check-proof", bundle, "--key", s.vkey)
	if r.code != 0 || !strings.Contains(r.stdout, "proof holds: seq 8 is leaf 7 of the tree of size 10") || !strings.Contains(r.stdout, `"actor":"ops-bob"`) {
		t.Fatalf("check-proof: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// By event id, in the newest checkpoint, to stdout; the key from a file.
	keyFile := filepath.Join(dir, "hubd.vkey")
	if err := os.WriteFile(keyFile, []byte(s.vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var b audit.Bundle
	orig, _ := os.ReadFile(bundle)
	_ = json.Unmarshal(orig, &b)
	var rec struct{ ID string }
	_ = json.Unmarshal(b.Record, &rec)
	r = run(t, nil, "--db", s.db, "prove", "--event", rec.ID)
	if r.code != 0 {
		t.Fatalf("prove --event: exit %d\n%s", r.code, r.stderr)
	}
	byID := filepath.Join(dir, "by-id.json")
	os.WriteFile(byID, []byte(r.stdout), 0o644)
	if r := run(t, nil, "check-proof", byID, "--key", keyFile, "--json"); r.code != 0 || !strings.Contains(r.stdout, `"valid":true,"seq":8,"leaf_index":7`) || !strings.Contains(r.stdout, `"tree_size":21`) {
		t.Fatalf("check-proof of the bundle by id: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	t.Run("record edited", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "edited.json")
		edited := bytes.Replace(orig, []byte(`"actor": "ops-bob"`), []byte(`"actor": "ops-eve"`), 1)
		if bytes.Equal(edited, orig) {
			t.Fatal("the bundle has no actor ops-bob to edit")
		}
		os.WriteFile(p, edited, 0o644)
		r := run(t, nil, "check-proof", p, "--key", s.vkey)
		wantFail(t, r, exitIntegrity, "proof does not hold", "the record shown differs from the record the proven leaf holds")
	})
	t.Run("leaf edited", func(t *testing.T) {
		var e audit.Bundle
		_ = json.Unmarshal(orig, &e)
		e.Leaf = bytes.Replace(e.Leaf, []byte("ops-bob"), []byte("ops-eve"), 1)
		out, _ := e.Marshal()
		p := filepath.Join(t.TempDir(), "edited.json")
		os.WriteFile(p, out, 0o644)
		r := run(t, nil, "check-proof", p, "--key", s.vkey, "--json")
		wantFail(t, r, exitIntegrity, "proof does not hold", "is not leaf 7 of the checkpoint's tree")
		if !strings.Contains(r.stdout, `"valid":false`) {
			t.Errorf("--json: %s; want valid false", r.stdout)
		}
	})
	t.Run("another key", func(t *testing.T) {
		r := run(t, nil, "check-proof", bundle, "--key", signFixture(t).vkey)
		wantFail(t, r, exitIntegrity, "proof does not hold", "no signature by")
	})
	t.Run("no key", func(t *testing.T) {
		wantFail(t, run(t, nil, "check-proof", bundle), exitUsage, "needs --key")
	})
	t.Run("not in the checkpoint", func(t *testing.T) {
		wantFail(t, run(t, nil, "--db", s.db, "prove", "--seq", "15", "--checkpoint", s.cps[10]), exitUsage, "seq 15 is not in the checkpoint's tree (size 10)")
	})

	t.Run("through a hub", func(t *testing.T) {
		h := audittest.StartHub(t, s.db)
		// The hub's copy has the same log and checkpoints.
		out := filepath.Join(t.TempDir(), "hub.json")
		r := run(t, nil, "--addr", h.Addr, "--token", h.Token, "prove", "--seq", "8", "--out", out)
		if r.code != 0 {
			t.Fatalf("prove --addr: exit %d\n%s", r.code, r.stderr)
		}
		if r := run(t, nil, "check-proof", out, "--key", s.vkey); r.code != 0 {
			t.Fatalf("check-proof of the hub's bundle: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r = run(t, nil, "--addr", h.Addr, "--token", h.Token, "verify", "--checkpoint", s.cps[10], "--checkpoint", s.cps[21], "--key", s.vkey)
		if r.code != 0 || !strings.Contains(r.stdout, "size 21: ok") {
			t.Fatalf("verify --checkpoint through the hub: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r = run(t, nil, "--addr", h.Addr, "--token", h.Token, "consistency", s.cps[10], s.cps[21], "--key", s.vkey)
		if r.code != 0 || !strings.Contains(r.stdout, "consistent: the tree of size 21 extends the tree of size 10") {
			t.Fatalf("consistency through the hub: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r = run(t, nil, "--addr", h.Addr, "--token", h.Token, "checkpoint")
		if c, err := checkpoint.Open([]byte(r.stdout), s.vkey); r.code != 0 || err != nil || c.Size != 21 {
			t.Fatalf("checkpoint through the hub: exit %d %v\n%s%s", r.code, err, r.stdout, r.stderr)
		}
	})
}

func TestConsistency(t *testing.T) {
	s := signFixture(t, 10, 21)
	r := run(t, nil, "--db", s.db, "consistency", s.cps[10], s.cps[21], "--key", s.vkey, "--json")
	var v consistencyJSON
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 0 || !v.Holds || v.OldSize != 10 || v.NewSize != 21 || len(v.Proof) == 0 {
		t.Fatalf("consistency: exit %d %+v %v\n%s", r.code, v, err, r.stderr)
	}
	wantFail(t, run(t, nil, "--db", s.db, "consistency", s.cps[21], s.cps[10], "--key", s.vkey), exitUsage, "give the older first")
	// A checkpoint of a forked log: same id and key, another record at 15.
	fork := signFixture(t)
	edit(t, fork.db, func(tx *bolt.Tx) error {
		log := tx.Bucket([]byte("log"))
		v := bytes.Replace(bytes.Clone(log.Get(seqKey(15))), []byte("node-a"), []byte("node-z"), 1)
		if err := log.Put(seqKey(15), v); err != nil {
			return err
		}
		return recomputeAll(tx)
	})
	st, err := ledger.Open(fork.db, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := signkey.LoadOrCreateKey(s.data, st.LogID())
	if err != nil {
		t.Fatal(err)
	}
	forked := filepath.Join(t.TempDir(), "forked")
	signAt(t, st, key, 21, forked)
	st.Close()
	r = run(t, nil, "--db", s.db, "consistency", s.cps[10], forked, "--key", s.vkey)
	wantFail(t, r, exitIntegrity, "does not connect the checkpoints' roots")
}

// TestCheckpointAndKeyCommands: checkpoint prints the newest signed note;
// key prints the verifier key from the data folder.
func TestCheckpointAndKeyCommands(t *testing.T) {
	s := signFixture(t, 10, 21)
	r := run(t, nil, "--db", s.db, "checkpoint")
	if c, err := checkpoint.Open([]byte(r.stdout), s.vkey); r.code != 0 || err != nil || c.Size != 21 {
		t.Fatalf("checkpoint: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	r = run(t, nil, "--db", s.db, "checkpoint", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"size":21`) {
		t.Fatalf("checkpoint --json: exit %d\n%s", r.code, r.stdout)
	}
	r = run(t, nil, "--data", s.data, "key")
	if r.code != 0 || strings.TrimSpace(r.stdout) != s.vkey {
		t.Fatalf("key: exit %d %q; want %q\n%s", r.code, r.stdout, s.vkey, r.stderr)
	}
	empty := filepath.Join(t.TempDir(), "ledger.db")
	audittest.Build(t, empty)
	wantFail(t, run(t, nil, "--db", empty, "checkpoint"), exitError, "no signed checkpoint in this ledger yet")
}

// TestProofBundleGolden pins the bundle's layout: field names, order and
// encodings (run-dependent values replaced).
func TestProofBundleGolden(t *testing.T) {
	s := signFixture(t, 21)
	r := run(t, nil, "--db", s.db, "prove", "--seq", "8")
	if r.code != 0 {
		t.Fatalf("prove: exit %d\n%s", r.code, r.stderr)
	}
	b64 := regexp.MustCompile(`"[A-Za-z0-9+/]{43}="`)
	got := b64.ReplaceAllString(r.stdout, `"<BASE64-HASH>"`)
	got = regexp.MustCompile(`"leaf": "[A-Za-z0-9+/=]+"`).ReplaceAllString(got, `"leaf": "<BASE64-LEAF>"`)
	got = regexp.MustCompile(`sessionledger/[0-9a-f]{32}`).ReplaceAllString(got, "sessionledger/<LOG-ID>")
	got = regexp.MustCompile(`\\n[A-Za-z0-9+/]{43}=\\n`).ReplaceAllString(got, `\n<BASE64-ROOT>\n`)
	got = regexp.MustCompile(`— (\S+) [A-Za-z0-9+/=]+\\n`).ReplaceAllString(got, `— $1 <SIGNATURE>\n`)
	checkGolden(t, "prove_bundle", got)
}
