package console_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// screenshots, when set, is where TestConsoleInABrowser saves its
// screenshots of the main pages (docs/console.md names the command).
var screenshots = flag.String("screenshots", "", "directory to write the console's screenshots to, relative to the repository (docs/console)")

const (
	adminToken    = "console-test-admin-token-0123456789"
	auditorToken  = "console-test-auditor-token-0123456789"
	operatorToken = "console-test-operator-token-0123456789"
)

// chromium finds Debian's chromium. Without one the browser tests are
// skipped, loudly; with SESSIONLEDGER_REQUIRE_BROWSER set (.ci/run sets
// it once it has installed chromium) they fail instead.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "NO CHROMIUM: the console's browser test did NOT run (install Debian's chromium: apt-get install chromium)"
	if os.Getenv("SESSIONLEDGER_REQUIRE_BROWSER") != "" {
		t.Fatal(msg)
	}
	fmt.Fprintf(os.Stderr, "\n!!!!!!!!!! %s !!!!!!!!!!\n\n", msg)
	t.Skip(msg)
	return ""
}

// browser starts headless Chromium with a fresh profile and no network of
// its own, and returns a chromedp context in one tab.
func browser(t *testing.T) context.Context {
	path := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// What the page logs and throws is reported when a test fails.
	var mu sync.Mutex
	var logs []string
	_ = chromedp.Listen(ctx, func(ev any) {
		var line string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			line = "console." + string(ev.Type) + ": " + strings.Join(args, " ")
		case *runtime.EventExceptionThrown:
			line = fmt.Sprintf("exception: %s %+v", ev.ExceptionDetails.Text, ev.ExceptionDetails.Exception)
		default:
			return
		}
		mu.Lock()
		logs = append(logs, line)
		mu.Unlock()
	})
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("the page logged:\n%s", strings.Join(logs, "\n"))
		}
	})
	return ctx
}

// hubd runs a daemon with the console on 127.0.0.1.
func hubd(t *testing.T) *daemon.Daemon {
	d, err := daemon.New(daemon.Config{Data: t.TempDir(), Listen: "127.0.0.1:0", Metrics: "off", ConsoleListen: "127.0.0.1:0",
		Hub: hub.Config{AdminTokens: map[string]string{adminToken: "support-sam"}, Admins: []hubapi.AdminToken{
			{Name: "audit-ann", Token: auditorToken, Role: hubapi.RoleAuditor},
			{Name: "ops-otto", Token: operatorToken, Role: hubapi.RoleOperator},
		}, ShutdownJitter: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.Shutdown(ctx)
	})
	return d
}

// buildHubctl builds hubctl once for the test.
func buildHubctl(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "hubctl")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/hubctl").CombinedOutput()
	if err != nil {
		t.Fatalf("go build hubctl: %v\n%s", err, out)
	}
	return bin
}

// connected is a `hubctl connect` process holding a session.
type connected struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	out     strings.Builder
	done    chan struct{}
	session string
}

func (c *connected) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// connect starts `hubctl connect` as user on device and waits for its
// welcome.
func connect(t *testing.T, hubctl, addr, user, device string) *connected {
	c := &connected{cmd: exec.Command(hubctl, "connect", "--addr", addr, "--user", user, "--device", device), done: make(chan struct{})}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stderr = c.cmd.Stdout
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	welcome := make(chan string, 1)
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			c.mu.Lock()
			c.out.WriteString(line + "\n")
			c.mu.Unlock()
			if i := strings.Index(line, `"session_id":"`); i >= 0 && strings.Contains(line, `"welcome"`) {
				id := line[i+len(`"session_id":"`):]
				welcome <- id[:strings.IndexByte(id, '"')]
			}
		}
		_ = c.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.done
	})
	select {
	case c.session = <-welcome:
	case <-time.After(15 * time.Second):
		t.Fatalf("hubctl connect %s: no welcome:\n%s", user, c.output())
	}
	return c
}

// exit waits for the process to end and returns its exit code.
func (c *connected) exit(t *testing.T) int {
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("hubctl connect did not exit:\n%s", c.output())
	}
	return c.cmd.ProcessState.ExitCode()
}

// within runs actions with a time limit.
func within(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// setValue sets a form control's value as a person choosing it would.
func setValue(id, v string) chromedp.Action[chromedp.Void] {
	js := fmt.Sprintf(`(() => { const e = document.getElementById(%q); e.value = %q; e.dispatchEvent(new Event("change")); return e.value === %q })()`, id, v, v)
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		ok, err := chromedp.Evaluate[bool](js)(ctx, t)
		if err == nil && !ok {
			err = fmt.Errorf("%s has no option %q", id, v)
		}
		return err
	})
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// waitJS waits until the expression is true.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func shoot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if *screenshots == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := *screenshots
	if !filepath.IsAbs(dir) {
		dir = filepath.Join("..", "..", dir) // relative to the repository, where the docs name the command
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleInABrowser drives the console in headless Chromium against a
// real hubd and real `hubctl connect` clients: a wrong token is refused;
// the right one signs in; a support engineer finds a connected user,
// opens their page and kicks them with a reason — the client exits 3 with
// that reason, the console shows the event id the kick produced, and the
// user's timeline in the console shows the kick. A reason holding <script>
// and an image with an onerror handler is shown as text and runs nothing.
// The live tail shows events as they are appended, and the ledger page the
// head and a verified chain.
func TestConsoleInABrowser(t *testing.T) {
	ctx := browser(t)
	hubctl := buildHubctl(t)
	d := hubd(t)
	url := "http://" + d.ConsoleAddr() + "/"
	carol := connect(t, hubctl, d.Addr(), "carol", "phone")
	connect(t, hubctl, d.Addr(), "carol", "laptop")
	mallory := connect(t, hubctl, d.Addr(), "mallory", "desk")
	connect(t, hubctl, d.Addr(), "dave", "tablet")

	// A wrong token is refused, and nothing but the sign-in shows.
	within(t, ctx, "wrong token",
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("signin-token")),
		chromedp.SendKeys(chromedp.ID("signin-token"), "not-the-token"),
		chromedp.Click(chromedp.CSS(`#signin-form button[type=submit]`)),
	)
	waitJS(t, ctx, "the refusal", `document.getElementById("signin-error").textContent.includes("refused")`)
	if hidden := text(t, ctx, "#nav"); hidden == "" {
		t.Fatal("no nav element")
	}
	if visible := evalBool(t, ctx, `!document.getElementById("page-sessions").hidden`); visible {
		t.Fatal("the sessions page shows after a refused token")
	}

	// Sign in, find carol.
	within(t, ctx, "sign in",
		setValue("signin-token", ""),
		chromedp.SendKeys(chromedp.ID("signin-token"), adminToken),
		chromedp.Click(chromedp.CSS(`#signin-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("page-sessions")),
	)
	if who := text(t, ctx, "#who"); !strings.Contains(who, "support-sam") {
		t.Errorf("signed in as %q; want support-sam", who)
	}
	waitJS(t, ctx, "four sessions", `document.querySelectorAll("#sessions-table tbody tr").length === 4`)
	if s := text(t, ctx, "#sessions-summary"); s != "4 live sessions" {
		t.Errorf("summary %q; want 4 live sessions", s)
	}
	shoot(t, ctx, "sessions")
	within(t, ctx, "search carol",
		chromedp.SendKeys(chromedp.ID("q-user"), "carol"),
		chromedp.Click(chromedp.CSS(`#search-form button[type=submit]`)),
	)
	waitJS(t, ctx, "carol's two sessions", `document.querySelectorAll("#sessions-table tbody tr").length === 2`)
	within(t, ctx, "open carol's page",
		chromedp.Click(chromedp.CSS(`#sessions-table a.user`)),
		chromedp.WaitVisible(chromedp.ID("page-user")),
	)
	waitJS(t, ctx, "carol's sessions and timeline", `document.querySelectorAll("#user-sessions tbody tr").length === 2 &&
		document.querySelectorAll("#timeline tbody tr").length >= 2`)

	// Kick carol's phone session with a reason.
	within(t, ctx, "kick carol's phone",
		setValue("kick-target", carol.session),
		setValue("kick-reconnect", "RECONNECT_NOT_ALLOWED"),
		chromedp.SendKeys(chromedp.ID("kick-reason"), "password changed"),
		chromedp.Click(chromedp.CSS(`#kick-form button[type=submit]`)),
	)
	waitJS(t, ctx, "the kick's event id", `document.getElementById("kick-result").dataset.eventId !== undefined`)
	eventID, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("kick-result").dataset.eventId`))
	if err != nil {
		t.Fatal(err)
	}
	if code := carol.exit(t); code != 3 {
		t.Errorf("hubctl connect exited %d; want 3 (kicked):\n%s", code, carol.output())
	}
	if out := carol.output(); !strings.Contains(out, `"reason":"password changed"`) || !strings.Contains(out, eventID) {
		t.Errorf("client output lacks the reason or the kick's event id %s:\n%s", eventID, out)
	}
	if res := text(t, ctx, "#kick-result"); !strings.Contains(res, "kicked: event "+eventID) {
		t.Errorf("kick result %q; want the event id %s", res, eventID)
	}
	waitJS(t, ctx, "the kick in carol's timeline", fmt.Sprintf(`[...document.querySelectorAll("#timeline tbody tr")].some(r =>
		r.cells[2].textContent === %q && r.cells[3].textContent.includes("kick of session") && r.cells[3].textContent.includes("password changed"))`, eventID))
	waitJS(t, ctx, "carol's session end in the timeline", `[...document.querySelectorAll("#timeline tbody tr")].some(r =>
		r.cells[3].textContent.includes("ended: kicked by support-sam"))`)
	shoot(t, ctx, "user")

	// A reason with markup: text on the page, nothing run.
	hostile := `<script>window.pwned=1</script><img src=x onerror="window.pwned=2">`
	within(t, ctx, "open mallory's page",
		chromedp.Navigate(url+"#user/mallory"),
		chromedp.WaitVisible(chromedp.ID("page-user")),
	)
	waitJS(t, ctx, "mallory's session", `document.querySelectorAll("#user-sessions tbody tr").length === 1`)
	within(t, ctx, "kick mallory with markup in the reason",
		chromedp.SendKeys(chromedp.ID("kick-reason"), hostile),
		chromedp.Click(chromedp.CSS(`#kick-form button[type=submit]`)),
	)
	waitJS(t, ctx, "mallory's kick in the timeline", `[...document.querySelectorAll("#timeline tbody tr")].some(r => r.cells[3].textContent.includes("<script>window.pwned=1</script>"))`)
	if code := mallory.exit(t); code != 3 {
		t.Errorf("mallory's client exited %d; want 3", code)
	}
	ran, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.pwned !== undefined || document.querySelectorAll("main script, main img").length > 0`))
	if err != nil || ran {
		t.Fatalf("markup in a reason ran or became elements (%v)", err)
	}

	// The live tail shows what is appended.
	within(t, ctx, "start the tail",
		chromedp.Navigate(url+"#tail"),
		chromedp.WaitVisible(chromedp.ID("page-tail")),
		chromedp.Click(chromedp.ID("tail-toggle")),
	)
	waitJS(t, ctx, "the tail running", `document.getElementById("tail-toggle").textContent === "Stop"`)
	conn, err := grpc.NewClient(d.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	actx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+adminToken)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Events from after the tail began: notify until one shows (the
		// stream may open just after the first).
		if _, err := hubpb.NewAdminClient(conn).Notify(actx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: "dave", Topic: "hello", Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		ok, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`[...document.querySelectorAll("#tail-table tbody tr")].some(r => r.cells[2].textContent === "notification_sent")`))
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the live tail showed no notification")
		}
		time.Sleep(200 * time.Millisecond)
	}
	shoot(t, ctx, "tail")
	within(t, ctx, "stop the tail", chromedp.Click(chromedp.ID("tail-toggle")))

	// The ledger page: head and a verified chain.
	within(t, ctx, "ledger page",
		chromedp.Navigate(url+"#ledger"),
		chromedp.WaitVisible(chromedp.ID("page-ledger")),
	)
	head := d.Store().Head().Seq
	waitJS(t, ctx, "the head", fmt.Sprintf(`document.getElementById("ledger-status").textContent.includes("head seq%d")`, head))
	within(t, ctx, "verify", chromedp.Click(chromedp.ID("verify")))
	waitJS(t, ctx, "the verify result", `document.getElementById("verify-result").textContent.startsWith("intact")`)
	shoot(t, ctx, "ledger")

	// What the console did is what the ledger holds.
	var kicks []string
	if err := d.Store().Scan(context.Background(), 1, 0, func(r *ledger.Record) error {
		if r.Event.GetType() == eventpb.EventType_EVENT_TYPE_KICK_REQUESTED {
			kicks = append(kicks, r.ID.String()+" "+r.Event.GetActor()+" "+r.Event.GetReason())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(kicks) != 2 || kicks[0] != eventID+" support-sam password changed" || !strings.HasSuffix(kicks[1], " support-sam "+hostile) {
		t.Errorf("kicks in the ledger %q; want the console's two, by support-sam", kicks)
	}
}

// signIn signs in to the console at url with tok in a fresh tab state.
func signIn(t *testing.T, ctx context.Context, url, tok string) {
	t.Helper()
	within(t, ctx, "sign in",
		chromedp.Navigate(url),
		chromedp.Evaluate[chromedp.Void](`(sessionStorage.clear(), ({}))`),
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.ID("signin-token")),
		setValue("signin-token", ""),
		chromedp.SendKeys(chromedp.ID("signin-token"), tok),
		chromedp.Click(chromedp.CSS(`#signin-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("page-sessions")),
	)
}

// actionForms are the action forms of a user's page, by the Admin method
// each calls.
var actionForms = map[string]string{
	"kick-form": "Kick", "ban-form": "Ban", "unban-form": "Unban", "notify-form": "Notify", "revoke-form": "Revoke",
}

// TestConsoleFollowsRole: the console shows what the token's role allows
// (WhoAmI) and the server refuses the rest. An auditor sees sessions, a
// user's timeline and the ledger, and no action at all; a call the page
// makes anyway with the auditor's token is refused with permission_denied
// (HTTP 403) and recorded. An operator sees every action, Revoke
// included, and a revocation from the console is recorded with its event
// id shown.
func TestConsoleFollowsRole(t *testing.T) {
	ctx := browser(t)
	hubctl := buildHubctl(t)
	d := hubd(t)
	url := "http://" + d.ConsoleAddr() + "/"
	connect(t, hubctl, d.Addr(), "erin", "phone")

	signIn(t, ctx, url, auditorToken)
	if who := text(t, ctx, "#who"); !strings.Contains(who, "audit-ann (auditor)") {
		t.Errorf("signed in as %q; want audit-ann (auditor)", who)
	}
	within(t, ctx, "open erin's page",
		chromedp.Navigate(url+"#user/erin"),
		chromedp.WaitVisible(chromedp.ID("page-user")),
	)
	waitJS(t, ctx, "erin's session and timeline", `document.querySelectorAll("#user-sessions tbody tr").length === 1 &&
		document.querySelectorAll("#timeline tbody tr").length >= 1`)
	for form := range actionForms {
		if shown := evalBool(t, ctx, fmt.Sprintf(`!document.getElementById(%q).hidden`, form)); shown {
			t.Errorf("the auditor is shown %s", form)
		}
	}
	if shown := evalBool(t, ctx, `!document.getElementById("actions-heading").hidden`); shown {
		t.Error("the auditor is shown the Actions heading with nothing under it")
	}
	// A direct call with the auditor's token, as a page or script could
	// make it: refused by the server, not merely hidden.
	const direct = `fetch("/sessionledger.hub.v1.Admin/Kick", {method: "POST", headers: {"Content-Type": "application/json",
		"Connect-Protocol-Version": "1", "Authorization": "Bearer " + sessionStorage.getItem("sessionledger.token")},
		body: JSON.stringify({user: "erin", reason: "sneaky"})}).then(async r => r.status + " " + (await r.json()).code)`
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](direct, chromedp.EvalAwaitPromise))
	if err != nil || got != "403 permission_denied" {
		t.Fatalf("auditor's direct Kick: %q, %v; want 403 permission_denied", got, err)
	}
	// The ledger page is the auditor's too.
	within(t, ctx, "ledger page",
		chromedp.Navigate(url+"#ledger"),
		chromedp.WaitVisible(chromedp.ID("page-ledger")),
	)
	waitJS(t, ctx, "the head", `document.getElementById("ledger-status").textContent.includes("head seq")`)

	signIn(t, ctx, url, operatorToken)
	within(t, ctx, "open erin's page as operator",
		chromedp.Navigate(url+"#user/erin"),
		chromedp.WaitVisible(chromedp.ID("page-user")),
	)
	for form := range actionForms {
		waitJS(t, ctx, "the operator's "+form, fmt.Sprintf(`!document.getElementById(%q).hidden`, form))
	}
	within(t, ctx, "revoke erin's tokens",
		chromedp.SendKeys(chromedp.ID("revoke-reason"), "phone stolen"),
		chromedp.Click(chromedp.CSS(`#revoke-form button[type=submit]`)),
	)
	waitJS(t, ctx, "the revocation's event id", `document.getElementById("revoke-result").dataset.eventId !== undefined`)
	eventID, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("revoke-result").dataset.eventId`))
	if err != nil {
		t.Fatal(err)
	}

	// The ledger holds the refusal and the revocation, each by its token's
	// name.
	var refused, revoked []string
	if err := d.Store().Scan(context.Background(), 1, 0, func(r *ledger.Record) error {
		switch ev := r.Event; ev.GetType() {
		case eventpb.EventType_EVENT_TYPE_ADMIN_CALL_REFUSED:
			refused = append(refused, ev.GetActor()+" "+ev.GetAdminCallRefused().GetMethod())
		case eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED:
			revoked = append(revoked, r.ID.String()+" "+ev.GetActor()+" "+ev.GetUser()+" "+ev.GetReason())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(refused) != 1 || refused[0] != "audit-ann /sessionledger.hub.v1.Admin/Kick" {
		t.Errorf("refusals in the ledger %q; want the auditor's Kick", refused)
	}
	if len(revoked) != 1 || revoked[0] != eventID+" ops-otto erin phone stolen" {
		t.Errorf("revocations in the ledger %q; want %s by ops-otto of erin's tokens", revoked, eventID)
	}
}

// evalBool evaluates expr in the page; an error (an element not there) fails
// the test rather than reading as false.
func evalBool(t *testing.T, ctx context.Context, expr string) bool {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}
