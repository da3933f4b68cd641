package checkpoint_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/mod/sumdb/note"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/checkpoint"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
	"github.com/sessionledger/sessionledger/ledger/signkey"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixedKey is a key made from a fixed seed, so signatures (Ed25519 is
// deterministic) are the same on every run.
func fixedKey(t *testing.T, name string) (note.Signer, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)), name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./ledger/checkpoint -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// TestCheckpointFormat pins the C2SP tlog-checkpoint text and the signed
// note, and the verifier key format.
func TestCheckpointFormat(t *testing.T) {
	k, vkey := fixedKey(t, "example.com/sessionledger/log-1")
	c := checkpoint.Checkpoint{Origin: "example.com/sessionledger/log-1", TreeHead: ledger.TreeHead{Size: 227, Root: ledger.Hash{0xde, 0xad, 0xbe, 0xef}}}
	signed, err := checkpoint.Sign(c, k)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "checkpoint.golden", signed)
	golden(t, "checkpoint.vkey.golden", []byte(vkey+"\n"))
	got, err := checkpoint.Open(signed, vkey)
	if err != nil || got != c {
		t.Fatalf("Open = %+v, %v; want %+v", got, err, c)
	}
	if p, err := checkpoint.Parse(signed); err != nil || p != c {
		t.Errorf("Parse = %+v, %v; want %+v", p, err, c)
	}
	if !strings.HasPrefix(string(signed), "example.com/sessionledger/log-1\n227\n3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— example.com/sessionledger/log-1 ") {
		t.Errorf("signed checkpoint is not origin, size, base64 root, blank line, signature:\n%s", signed)
	}
}

func TestOpenRefuses(t *testing.T) {
	k, vkey := fixedKey(t, "log-a")
	_, otherV, err := note.GenerateKey(nil, "log-a")
	if err != nil {
		t.Fatal(err)
	}
	c := checkpoint.Checkpoint{Origin: "log-a", TreeHead: ledger.TreeHead{Size: 10, Root: ledger.Hash{1}}}
	signed, _ := checkpoint.Sign(c, k)
	editedRoot := bytes.Replace(signed, []byte("AQAAAA"), []byte("AgAAAA"), 1)
	for _, tc := range []struct {
		name, vkey string
		signed     []byte
		want       error
		says       string
	}{
		{"another key", otherV, signed, checkpoint.ErrSignature, "no signature by log-a"},
		{"root edited", vkey, editedRoot, checkpoint.ErrSignature, "changed after it was signed"},
		{"not a note", vkey, []byte("hello\n"), checkpoint.ErrMalformed, ""},
		{"bad key", "nonsense", signed, checkpoint.ErrMalformed, "verifier key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkpoint.Open(tc.signed, tc.vkey)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Open: %v; want %v saying %q", err, tc.want, tc.says)
			}
		})
	}
	for _, text := range []string{"o\n01\nAAAA\n", "o\n1\n", "\n1\n" + strings.Repeat("A", 43) + "=\n", "o\n1\nAAAA\n"} {
		if _, err := checkpoint.ParseText([]byte(text)); !errors.Is(err, checkpoint.ErrMalformed) {
			t.Errorf("ParseText(%q): %v; want ErrMalformed", text, err)
		}
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	s, created, err := signkey.LoadOrCreateKey(dir, "log-x")
	if err != nil || !created {
		t.Fatalf("create: %v, %v", created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, signkey.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi, err)
	}
	again, created, err := signkey.LoadOrCreateKey(dir, "log-x")
	if err != nil || created || again.KeyHash() != s.KeyHash() {
		t.Fatalf("reload: %v, %v; want the same key", created, err)
	}
	if _, _, err := signkey.LoadOrCreateKey(dir, "log-y"); err == nil || !strings.Contains(err.Error(), `the key of log "log-x"`) {
		t.Errorf("key of another log: %v; want refused", err)
	}
	vkey, err := signkey.VerifierKey(filepath.Join(dir, signkey.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	c := checkpoint.Checkpoint{Origin: "log-x", TreeHead: ledger.TreeHead{Size: 1}}
	signed, _ := checkpoint.Sign(c, s)
	if _, err := checkpoint.Open(signed, vkey); err != nil {
		t.Errorf("the derived verifier key does not verify: %v", err)
	}
}

// TestSignerWritesWhenTheLogGrows runs a Signer on a ledger while records
// are appended: it signs only when the log grew, at most every Every, and
// every checkpoint in the directory, the ledger and GET /checkpoint
// verifies against the log.
func TestSignerWritesWhenTheLogGrows(t *testing.T) {
	st := ledgertest.Open(t, nil)
	keyDir := t.TempDir()
	key, created, err := signkey.LoadOrCreateKey(keyDir, st.LogID())
	if err != nil || !created {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cps")
	s, err := checkpoint.New(checkpoint.Config{Store: st, Key: key, Every: 20 * time.Millisecond, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Latest(); ok {
		t.Fatal("a checkpoint before any record")
	}
	s.Start()
	ctx := context.Background()
	for i := range 5 {
		if _, err := st.Append(ctx, ledgertest.Event(eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, "u", "s")); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if sc, ok := s.Latest(); ok && sc.Size == uint64(i+1) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint of size %d within 5s", i+1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Idle: nothing new is signed.
	time.Sleep(60 * time.Millisecond)
	files, _ := filepath.Glob(filepath.Join(dir, "checkpoint-*"))
	if len(files) != 5 {
		t.Errorf("%d checkpoint files; want 5 (one per growth)", len(files))
	}
	srv := httptest.NewServer(s.Handler())
	res, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	srv.Close()
	latest, _ := s.Latest()
	if res.StatusCode != 200 || !bytes.Equal(body, latest.Note) {
		t.Errorf("GET /checkpoint: %d %q; want the latest", res.StatusCode, body)
	}
	if _, err := st.Append(ctx, ledgertest.Event(eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, "u", "s")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if l, _ := s.Latest(); l.Size != 6 {
		t.Errorf("after Close the latest is of size %d; want 6 (Close signs the last growth)", l.Size)
	}
	vkey, err := signkey.VerifierKey(filepath.Join(keyDir, signkey.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	files, _ = filepath.Glob(filepath.Join(dir, "checkpoint-*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		c, err := checkpoint.Open(b, vkey)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		root, err := st.TreeRoot(c.Size)
		if err != nil || root != c.Root || c.Origin != st.LogID() || filepath.Base(f) != checkpoint.FileName(c.Size) {
			t.Errorf("%s: %+v; the log's root there is %x (%v)", f, c, root, err)
		}
	}
	n := 0
	err = st.Checkpoints(func(cp ledger.StoredCheckpoint) error {
		n++
		_, err := checkpoint.Open(cp.Signed, vkey)
		return err
	})
	if err != nil || n != 6 {
		t.Errorf("checkpoints in the ledger: %d, %v; want 6 that verify", n, err)
	}
	// A new Signer on the same ledger starts from the stored latest.
	s2, err := checkpoint.New(checkpoint.Config{Store: st, Key: key, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := s2.Latest(); !ok || l.Size != 6 {
		t.Errorf("a new signer's latest: %+v; want size 6", l)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}
