package main

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/hub/hubapi"

	"google.golang.org/grpc/metadata"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/checkpoint"
	"github.com/sessionledger/sessionledger/ledger/signkey"
)

// notifyLoop records notifications through hubd's Admin API until stop is
// closed or a call fails (hubd killed); at most 2000 calls.
func notifyLoop(t *testing.T, p *proc, stop <-chan struct{}) {
	tok, err := hubapi.FirstAdminToken(filepath.Join(p.data, hubapi.AdminTokenFile))
	if err != nil {
		t.Error(err)
		return
	}
	admin := hubpb.NewAdminClient(dialConn(t, p.grpc))
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	for range 2000 {
		select {
		case <-stop:
			return
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := admin.Notify(cctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: "u", Topic: "t", Payload: []byte("x")})
		cancel()
		if err != nil {
			return
		}
	}
}

// verifyDir checks every checkpoint file in dir against the ledger in
// data (hubd stopped): its signature by the key in data, and the log.
func verifyDir(t *testing.T, data, dir string) int {
	t.Helper()
	vkey, err := signkey.VerifierKey(filepath.Join(data, signkey.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "checkpoint-*"))
	var cps []checkpoint.Checkpoint
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, err := checkpoint.Open(b, vkey)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		cps = append(cps, c)
	}
	st, err := ledger.Open(filepath.Join(data, "ledger.db"), &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err := audit.NewEngine(st).Verify(context.Background(), audit.VerifyQuery{Checkpoints: cps}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res.Checkpoints {
		if !r.OK {
			t.Errorf("%s: %s", files[i], r.Problem)
		}
	}
	if res.Broken != nil || res.TreeDamage != nil || len(res.Findings) > 0 {
		t.Errorf("verify: chain %v, tree %v, findings %v", res.Broken, res.TreeDamage, res.Findings)
	}
	return len(cps)
}

// TestSignedCheckpoints: hubd creates its key (0600), signs a checkpoint
// when the log grew, into --signed-checkpoint-dir, the ledger and GET
// /checkpoint, and one more on shutdown; every one verifies.
func TestSignedCheckpoints(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(t.TempDir(), "cps")
	p := startHubd(t, data, "--signed-checkpoint-every", "50ms", "--signed-checkpoint-dir", dir)
	fi, err := os.Stat(filepath.Join(data, signkey.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v; want mode 0600", fi, err)
	}
	vkey, err := signkey.VerifierKey(filepath.Join(data, signkey.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.output(), vkey) {
		t.Errorf("hubd did not log its verifier key %s", vkey)
	}
	res, err := http.Get("http://" + p.metrics + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /checkpoint of an empty log: %d; want 404", res.StatusCode)
	}
	session(t, p.grpc, "alice", "phone")
	var body []byte
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get("http://" + p.metrics + "/checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == 200 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err := checkpoint.Open(body, vkey)
	if err != nil || c.Size == 0 {
		t.Fatalf("GET /checkpoint: %q, %v; want a signed checkpoint", body, err)
	}
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.output())
	}
	if n := verifyDir(t, data, dir); n < 2 {
		t.Errorf("%d checkpoints in the directory; want at least 2 (one while running, one at shutdown)", n)
	}
	st, err := ledger.Open(filepath.Join(data, "ledger.db"), &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	last, ok, err := st.LastCheckpoint()
	head := st.Head().Seq
	st.Close()
	if err != nil || !ok || last.Size != head {
		t.Errorf("the last checkpoint in the ledger: %+v %v %v; want the head, seq %d (signed at shutdown)", last.TreeHead, ok, err, head)
	}
}

// TestCrashWithCheckpoints SIGKILLs hubd while events are appended and
// checkpoints written, a few rounds on one data folder; after each restart
// every checkpoint in the directory verifies against the log.
func TestCrashWithCheckpoints(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(t.TempDir(), "cps")
	rounds := 3
	if testing.Short() {
		rounds = 2
	}
	for round := range rounds {
		p := startHubd(t, data, "--signed-checkpoint-every", "10ms", "--signed-checkpoint-dir", dir)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() { defer wg.Done(); notifyLoop(t, p, stop) }()
		}
		// Kill once this run has written a checkpoint (a loaded machine
		// can take longer than the sleep alone to write the first), at a
		// random moment after.
		before := countFiles(t, dir)
		waitFor(t, "a checkpoint written in this round", func() bool { return countFiles(t, dir) > before })
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.exited
		close(stop)
		wg.Wait()
		n := verifyDir(t, data, dir)
		t.Logf("round %d: %d checkpoints verify", round, n)
		if n == 0 && round > 0 {
			t.Errorf("round %d: no checkpoint written", round)
		}
	}
	// A restart after the last kill signs and keeps verifying.
	p := startHubd(t, data, "--signed-checkpoint-every", "10ms", "--signed-checkpoint-dir", dir)
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.output())
	}
	verifyDir(t, data, dir)
}

func TestDeprecatedCheckpointEvery(t *testing.T) {
	o, err := parseOptions([]string{"--checkpoint-every", "5"}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil || o.checkpointEvery != 5 || len(o.deprecated) != 1 {
		t.Fatalf("--checkpoint-every 5: %+v, %v; want it to set the projection checkpoint, flagged deprecated", o, err)
	}
	o, err = parseOptions([]string{"--projection-checkpoint-every", "7"}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil || o.checkpointEvery != 7 || len(o.deprecated) != 0 {
		t.Fatalf("--projection-checkpoint-every 7: %+v, %v", o, err)
	}
	o, err = parseOptions(nil, func(k string) (string, bool) { return "9", k == "HUBD_CHECKPOINT_EVERY" }, io.Discard)
	if err != nil || o.checkpointEvery != 9 || len(o.deprecated) != 1 {
		t.Fatalf("HUBD_CHECKPOINT_EVERY=9: %+v, %v", o, err)
	}
}

// countFiles is how many files dir holds (0 when it does not exist yet).
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(es)
}
