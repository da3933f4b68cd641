package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// breakFile makes the open file path's descriptor a read-only one on
// /dev/null, so the ledger's next commit really fails (EBADF), with an
// error that names path.
func breakFile(t *testing.T, path string) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == path {
			fd, _ := strconv.Atoi(e.Name())
			if err := syscall.Dup2(int(null.Fd()), fd); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no open descriptor of %s", path)
}

// TestHealthzHidesErrorDetails: /healthz answers without a credential, so
// a failed ledger must not show its error there (it names the data
// directory's files); the log and the metrics keep the details.
func TestHealthzHidesErrorDetails(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ledger.db")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := daemon.New(daemon.Config{Data: dir, Listen: "127.0.0.1:0", Metrics: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		Hub: hub.Config{AdminTokens: map[string]string{"test-admin-token-0123456789": "ops"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(ctx)
	store, srv := d.Store(), d.Hub()
	hs := struct{ URL string }{"http://" + d.MetricsAddr()}
	get := func() (int, string) {
		t.Helper()
		res, err := http.Get(hs.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, strings.TrimSpace(string(b))
	}
	if code, body := get(); code != 200 || body != "ok" {
		t.Fatalf("/healthz of a healthy hub: %d %q", code, body)
	}
	breakFile(t, path)
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_UNBANNED, User: "u", Actor: "ops", Body: &eventpb.Event_UserUnbanned{UserUnbanned: &eventpb.UserUnbanned{}}}
	if _, err := store.Append(ctx, ev); err == nil {
		t.Fatal("append on a broken file succeeded")
	}
	if err := srv.Err(); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Err = %v; want the ledger's failure, naming %s (or this test proves nothing)", err, dir)
	}
	code, body := get()
	if want := "not serving: the ledger failed"; code != http.StatusServiceUnavailable || body != want {
		t.Fatalf("/healthz: %d %q; want 503 %q", code, body, want)
	}
	if strings.Contains(body, dir) {
		t.Fatalf("/healthz shows %s: %q", dir, body)
	}
}
