package browsertest

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

var screenshot = flag.String("screenshot", "", "write a PNG of the kicked demo page to this file (docs/demo-kicked.png: go test ./internal/browsertest -run TestDemoPage -screenshot ../../docs/demo-kicked.png)")

// skipLoudly skips with a message that stands out in go test's output
// (printed even without -v): a skipped browser test must not pass for a
// run one.
func skipLoudly(t *testing.T, why string) {
	t.Helper()
	msg := "!!! SKIPPED: the browser test did not run: " + why + " !!!"
	if os.Getenv("SESSIONLEDGER_REQUIRE_BROWSER") != "" {
		t.Fatal(why + " (SESSIONLEDGER_REQUIRE_BROWSER is set: .ci/run installed what this test needs)")
	}
	fmt.Fprintln(os.Stderr, msg)
	t.Skip(msg)
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// TestDemoPage: the demo page connects over WebSocket, shows a notification
// sent with hubctl notify, is kicked with hubctl kick --reason ...
// --no-reconnect, shows that reason with the operator, the kick's event id
// and the close code, and does not reconnect. The ledger records the
// session as a WebSocket one, ended by that kick.
func TestDemoPage(t *testing.T) {
	chrome := findChromium()
	if chrome == "" {
		skipLoudly(t, "no chromium in PATH (.ci/run installs Debian's chromium)")
	}
	bin := t.TempDir()
	build := exec.Command(goTool(), "build", "-o", bin+string(filepath.Separator), "./cmd/hubctl")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build hubctl: %v\n%s", err, out)
	}
	data := t.TempDir()
	d, err := daemon.New(daemon.Config{Data: data, Listen: "127.0.0.1:0", WSListen: "127.0.0.1:0", Metrics: "off",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	startCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	hubctl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, "hubctl"), append(args, "--addr", d.Addr(), "--data", data)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("hubctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(900, 720),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	// The browser lives as long as the context of the first Run: no
	// timeout on it; each step below has its own.
	ctx, ccancel := chromedp.NewContext(actx)
	defer ccancel()
	wait := func(what, expr string) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := chromedp.Run(c, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(id string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById(`+strconv.Quote(id)+`).innerText`))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	page := "http://" + d.WSAddr() + "/demo/?user=alice&device=browser&autoconnect=1"
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}
	wait("the page did not connect", `window.demo && window.demo.state === "open"`)
	if got := text("state"); got != "open" {
		t.Fatalf("state shown %q; want open", got)
	}

	hubctl("notify", "--user", "alice", "--topic", "chat", "--payload", `{"text":"hello from hubctl"}`)
	wait("the notification was not shown", `document.getElementById("notes").innerText.includes("hello from hubctl")`)

	var kick struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal([]byte(hubctl("kick", "--user", "alice", "--reason", "password changed", "--no-reconnect", "--json")), &kick); err != nil || kick.EventID == "" {
		t.Fatalf("hubctl kick --json: %v (%+v)", err, kick)
	}
	wait("the kick was not shown", `getComputedStyle(document.getElementById("ended")).display !== "none"`)
	got := strings.Join([]string{text("ended-title"), text("ended-reason"), text("ended-actor"), text("ended-event"), text("ended-code")}, " | ")
	want := "Disconnected: kicked | password changed | admin | " + kick.EventID + " | 4501"
	if got != want {
		t.Fatalf("the page shows %q; want %q", got, want)
	}

	// Told not to reconnect: the page must stay away.
	time.Sleep(1500 * time.Millisecond)
	type pageState struct {
		State    string `json:"state"`
		Connects int    `json:"connects"`
	}
	after, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](`({state: window.demo.state, connects: window.demo.connects})`))
	if err != nil {
		t.Fatal(err)
	}
	if after.State != "closed" || after.Connects != 1 {
		t.Fatalf("after the kick the page is %+v; want closed after 1 connect (no reconnect)", after)
	}
	if out := hubctl("sessions", "--user", "alice"); !strings.Contains(out, "0 live sessions") {
		t.Fatalf("hubctl sessions after the kick:\n%s", out)
	}

	if *screenshot != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*screenshot, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", *screenshot)
	}

	// The ledger: a WebSocket session, ended by that kick.
	var connect, end *eventpb.Event
	if err := d.Store().ByUser(startCtx, "alice", 0, 0, func(r *ledger.Record) error {
		switch r.Event.GetType() {
		case eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED:
			connect = r.Event
		case eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED:
			end = r.Event
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if connect.GetSessionConnected().GetTransport() != "websocket+json" || end.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED ||
		end.GetReason() != "password changed" {
		t.Fatalf("ledger: connect %v, end %v; want a websocket+json session ended by the kick", connect, end)
	}
}
