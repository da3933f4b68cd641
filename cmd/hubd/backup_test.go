package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/testports"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/projections"
)

// TestBackupUnderLoadAndRestore follows docs/operations.md (Backup and
// restore) end to end with the real binaries: `hubctl backup` takes a hot
// backup from a hubd under load (notifications streaming to clients); the
// copy verifies and holds the log, its indexes and the projection
// checkpoint; then hubd is stopped, its ledger replaced by the backup and
// hubd started again on the same address. The clients, which saw
// notifications the restored log no longer holds, resume their sessions
// (the hub tells them the log was rewound), and a notification sent after
// the restore reaches every one of them instead of being dropped as a seq
// they had seen.
func TestBackupUnderLoadAndRestore(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	// Two hubds serve their clients at the same place one after the
	// other: the address is reserved for the test (internal/testports), so
	// the clients, which dial it while no hubd runs, reach only them.
	addr := testports.Addr(t)
	p := startHubd(t, data, "--listen", addr)
	hubctl := filepath.Join(dir, "hubctl")
	if out, err := exec.Command("go", "build", "-o", hubctl, "../hubctl").CombinedOutput(); err != nil {
		t.Fatalf("go build hubctl: %v\n%s", err, out)
	}
	admin, ctx := adminOf(t, p)

	// Clients that come back as the server advises, resuming.
	const users = 4
	type cl struct {
		c    *client.Client
		mu   sync.Mutex
		seen map[string]int // topic -> notifications
	}
	clients := make([]*cl, users)
	for i := range clients {
		c := &cl{seen: map[string]int{}}
		var err error
		c.c, err = client.Dial(ctx, addr, client.WithUser(fmt.Sprint("user-", i), "phone"), client.WithReconnect(true), client.WithAutoAck(),
			client.WithMaxWait(500*time.Millisecond), client.WithLogger(nil),
			client.OnNotification(func(n client.Notification) {
				c.mu.Lock()
				c.seen[n.Topic]++
				c.mu.Unlock()
			}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.c.Close() })
		clients[i] = c
	}
	count := func(c *cl, topic string) int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.seen[topic]
	}

	// Load: notifications to every user, until stopped.
	stop := make(chan struct{})
	var sent atomic.Int64
	var loadErr atomic.Value
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() {
			for n := 0; n < 20_000; n++ { // bounded
				select {
				case <-stop:
					return
				default:
				}
				_, err := admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: fmt.Sprint("user-", i),
					Topic: "load", Payload: []byte(strconv.Itoa(n))})
				if err != nil {
					loadErr.Store(err)
					return
				}
				sent.Add(1)
			}
		})
	}
	waitFor(t, "load flowing", func() bool { return sent.Load() > 200 })

	backup := filepath.Join(dir, "backup.db")
	out, err := exec.Command(hubctl, "--addr", addr, "--data", data, "backup", "--out", backup).CombinedOutput()
	if err != nil {
		t.Fatalf("hubctl backup: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`backup written to .*: (\d+) bytes, head seq (\d+), hash ([0-9a-f]{64})`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("hubctl backup printed %q; want the size, head seq and hash", out)
	}
	backupHead, _ := strconv.ParseUint(string(m[2]), 10, 64)
	// The load goes on past the backup: these notifications are delivered
	// and then lost with the restore.
	waitFor(t, "load past the backup", func() bool {
		st, err := admin.LedgerStatus(ctx, &hubpb.LedgerStatusRequest{})
		return err == nil && st.GetHeadSeq() > backupHead+200
	})
	close(stop)
	wg.Wait()
	if err, _ := loadErr.Load().(error); err != nil {
		t.Fatalf("load: %v", err)
	}
	for i, c := range clients {
		waitFor(t, fmt.Sprint("client ", i, " past the backup"), func() bool { return c.c.Resume().LastAckedSeq > backupHead })
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 || strconv.FormatInt(fi.Size(), 10) != string(m[1]) {
		t.Fatalf("backup file %v %v; want mode 0600 and %s bytes", fi, err, m[1])
	}

	// The backup is a whole ledger: it verifies, ends where hubctl said,
	// and holds the projection checkpoint and the live sessions.
	checkBackup(t, backup, backupHead, string(m[3]), users)

	// Restore: stop, replace, start, verify (docs/operations.md).
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("hubd exit %d:\n%s", code, p.output())
	}
	copyFile(t, backup, filepath.Join(data, "ledger.db"))
	p2 := startHubd(t, data, "--listen", addr)
	admin2, ctx2 := adminOf(t, p2)

	// Every client resumes its session on the restored log, is told the
	// log was rewound, and gets what is sent now.
	for i, c := range clients {
		waitFor(t, fmt.Sprint("client ", i, " resumed"), func() bool {
			s := c.c.Session()
			return c.c.Stats().Resumes >= 1 && s.ResumedFrom != "" && s.LogRewound
		})
	}
	for i := range users {
		if _, err := admin2.Notify(ctx2, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: fmt.Sprint("user-", i),
			Topic: "after-restore", Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range clients {
		waitFor(t, fmt.Sprint("client ", i, " got the notification sent after the restore"), func() bool { return count(c, "after-restore") == 1 })
	}
	tok, err := hubapi.FirstAdminToken(filepath.Join(data, hubapi.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	ac, err := audit.NewClient(addr, tok)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	res, err := ac.Verify(ctx2, audit.VerifyQuery{}, nil)
	if err != nil || res.Broken != nil || res.Head.Seq <= backupHead {
		t.Fatalf("verify after the restore: %+v %v; want intact, past the backup's head %d", res, err, backupHead)
	}
	if code := p2.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("restored hubd exit %d:\n%s", code, p2.output())
	}
}

// checkBackup opens a backup read-only and checks it is a whole ledger
// ending at head with hash, holding the projections' checkpoint and the
// sessions that were live.
func checkBackup(t *testing.T, path string, head uint64, hash string, live int) {
	t.Helper()
	st, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := st.Head()
	if h.Seq != head || fmt.Sprintf("%x", h.Hash[:]) != hash {
		t.Fatalf("backup head %d %x; want %d %s", h.Seq, h.Hash[:], head, hash)
	}
	if _, err := st.Verify(context.Background(), 0, 0, nil); err != nil {
		t.Fatalf("backup does not verify: %v", err)
	}
	if b, err := st.GetBlob("projections/checkpoint"); err != nil || len(b) == 0 {
		t.Fatalf("backup has no projection checkpoint: %v", err)
	}
	ls, err := audit.NewEngine(st).SessionsAt(context.Background(), h.Time, projections.Filter{})
	if err != nil || len(ls) != live {
		t.Fatalf("backup shows %d live sessions at its head (%v); want %d", len(ls), err, live)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
