package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/internal/testtls"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// The tests run hubd as a real child process: the test binary re-executes
// itself with HUBD_TEST_MAIN=1 and becomes hubd.
func TestMain(m *testing.M) {
	if os.Getenv("HUBD_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// proc is one hubd process.
type proc struct {
	t       *testing.T
	cmd     *exec.Cmd
	data    string
	grpc    string
	metrics string
	mu      sync.Mutex
	logs    bytes.Buffer
	exited  chan struct{}
	code    int
}

// startHubd starts hubd on data with extra flags and waits until it
// listens.
func startHubd(t *testing.T, data string, extra ...string) *proc {
	t.Helper()
	p := launch(t, data, extra...)
	deadline := time.After(20 * time.Second)
	for p.grpc == "" {
		select {
		case <-p.exited:
			t.Fatalf("hubd exited with %d before listening:\n%s", p.code, p.output())
		case <-deadline:
			p.kill()
			t.Fatalf("hubd did not listen within 20s:\n%s", p.output())
		case <-time.After(20 * time.Millisecond):
			p.mu.Lock()
			p.grpc, p.metrics = listening(p.logs.String())
			p.mu.Unlock()
		}
	}
	return p
}

// launch starts hubd without waiting for it.
func launch(t *testing.T, data string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"--data", data, "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
		"--log-format", "json", "--shutdown-jitter", "200ms", "--shutdown-reconnect", "100ms"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "HUBD_TEST_MAIN=1")
	p := &proc{t: t, cmd: cmd, data: data, exited: make(chan struct{})}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		_ = cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
	return p
}

func listening(logs string) (grpcAddr, metricsAddr string) {
	for _, line := range strings.Split(logs, "\n") {
		var l struct{ Msg, GRPC, Metrics string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "hubd listening" {
			return l.GRPC, l.Metrics
		}
	}
	return "", ""
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// signal sends sig and waits for the exit code.
func (p *proc) signal(sig os.Signal) int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.kill()
		p.t.Fatalf("hubd did not exit within 20s of %v:\n%s", sig, p.output())
	}
	return p.code
}

func dialConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// session connects user/device and returns the stream and its Welcome.
func session(t *testing.T, addr, user, device string) (hubpb.Hub_ConnectClient, *hubpb.Welcome) {
	t.Helper()
	return sessionOn(t, dialConn(t, addr), user, device)
}

// sessionOn is session over conn.
func sessionOn(t *testing.T, conn *grpc.ClientConn, user, device string) (hubpb.Hub_ConnectClient, *hubpb.Welcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	st, err := hubpb.NewHubClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{User: user, Device: device}}}); err != nil {
		t.Fatal(err)
	}
	f, err := st.Recv()
	if err != nil || f.GetWelcome() == nil {
		t.Fatalf("connect %s/%s: frame %v, err %v", user, device, f, err)
	}
	return st, f.GetWelcome()
}

// ends reads the ledger at data (hubd must have exited) and returns the
// disconnect cause of every session that has one.
func ends(t *testing.T, data string) map[string]eventpb.DisconnectCause {
	t.Helper()
	store, err := ledger.Open(filepath.Join(data, "ledger.db"), &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.Verify(context.Background(), 1, 0, nil); err != nil {
		t.Fatalf("ledger does not verify: %v", err)
	}
	out := map[string]eventpb.DisconnectCause{}
	err = store.Scan(context.Background(), 1, 0, func(r *ledger.Record) error {
		if d := r.Event.GetSessionDisconnected(); d != nil {
			if _, dup := out[r.Event.GetSession()]; dup {
				t.Errorf("session %s ended twice", r.Event.GetSession())
			}
			out[r.Event.GetSession()] = d.GetCause()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCrashRecovery kills hubd with SIGKILL while sessions are live, several
// rounds; each restart must end the sessions the crash left open with cause
// lost, exactly once, and the chain must verify.
func TestCrashRecovery(t *testing.T) {
	data := t.TempDir()
	var sessions []string
	for round := range 3 {
		p := startHubd(t, data)
		for i := range 3 {
			_, w := session(t, p.grpc, "crash-user", "dev-"+string(rune('a'+round))+string(rune('0'+i)))
			sessions = append(sessions, w.GetSessionId())
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.exited
	}
	// The last round's sessions are ended by one more start.
	p := startHubd(t, data)
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("hubd exited %d after SIGTERM:\n%s", code, p.output())
	}
	got := ends(t, data)
	for _, id := range sessions {
		if got[id] != eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST {
			t.Errorf("session %s: end cause %v; want LOST", id, got[id])
		}
	}
}

// TestSignalShutdown: SIGTERM tells every session to come back after a
// delay, records every end and exits 0.
func TestSignalShutdown(t *testing.T) {
	data := t.TempDir()
	p := startHubd(t, data)
	type conn struct {
		st hubpb.Hub_ConnectClient
		id string
	}
	var cs []conn
	for _, u := range []string{"ann", "bob"} {
		st, w := session(t, p.grpc, u, "phone")
		cs = append(cs, conn{st, w.GetSessionId()})
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		var d *hubpb.Disconnect
		var err error
		for {
			var f *hubpb.ServerFrame
			if f, err = c.st.Recv(); err != nil {
				break
			}
			if f.GetDisconnect() != nil {
				d = f.GetDisconnect()
			}
		}
		if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_SERVER_SHUTDOWN || d.GetReconnect() != hubpb.Reconnect_RECONNECT_AFTER || d.GetReconnectAfterMs() < 100 {
			t.Errorf("session %s got %v; want server_shutdown, reconnect after >= 100ms", c.id, d)
		}
		if s := status.Convert(err); s.Code() != codes.Unavailable {
			t.Errorf("session %s ended with %v; want Unavailable", c.id, s)
		}
	}
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("hubd did not exit:\n%s", p.output())
	}
	if p.code != 0 {
		t.Fatalf("hubd exited %d:\n%s", p.code, p.output())
	}
	got := ends(t, data)
	for _, c := range cs {
		if got[c.id] != eventpb.DisconnectCause_DISCONNECT_CAUSE_SERVER_SHUTDOWN {
			t.Errorf("session %s: cause %v; want SERVER_SHUTDOWN", c.id, got[c.id])
		}
	}
}

// TestServes checks what an operator points tools at: /healthz, /metrics,
// gRPC health, reflection (grpcurl), and the admin token hubd created.
func TestServes(t *testing.T) {
	data := t.TempDir()
	p := startHubd(t, data)
	info, err := os.Stat(filepath.Join(data, hubapi.AdminTokenFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v, %v; want mode 0600", info, err)
	}
	get := func(path string) (int, string) {
		res, err := http.Get("http://" + p.metrics + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := get("/metrics")
	for _, want := range []string{"sessionledger_sessions_live 0", `sessionledger_connects_rejected_total{code="node_full"} 0`, "go_goroutines"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics: %d, no %s", code, want)
		}
	}
	conn := dialConn(t, p.grpc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "sessionledger.hub.v1.Hub"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health: %v %v", hc, err)
	}
	rs, err := reflectpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	res, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range res.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"sessionledger.hub.v1.Hub", "sessionledger.hub.v1.Admin", "sessionledger.audit.v1.Audit", "grpc.health.v1.Health"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("reflection lists %v; missing %s", names, want)
		}
	}
	_ = rs.CloseSend()

	// The created token works for Admin; another does not.
	tok, err := hubapi.FirstAdminToken(filepath.Join(data, hubapi.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	admin := hubpb.NewAdminClient(conn)
	if _, err := admin.ListSessions(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), &hubpb.ListSessionsRequest{}); err != nil {
		t.Errorf("ListSessions with the created token: %v", err)
	}
	if _, err := admin.ListSessions(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer wrong-token-wrong-token"), &hubpb.ListSessionsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ListSessions with a wrong token: %v; want Unauthenticated", err)
	}
	// The default --max-message-size takes the largest notification
	// docs/api.md allows.
	if _, err := admin.Notify(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), &hubpb.NotifyRequest{
		Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: strings.Repeat("t", hubapi.MaxNameBytes), Payload: make([]byte, hubapi.MaxNotifyPayload)}); err != nil {
		t.Errorf("Notify with a 64 KiB payload: %v", err)
	}
	// auditq --addr: the Audit service answers with the admin token, and
	// sees the connect just made through hubd.
	_, w := session(t, p.grpc, "audited", "laptop")
	ac, err := audit.NewClient(p.grpc, tok)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	vr, err := ac.Verify(ctx, audit.VerifyQuery{}, nil)
	if err != nil || !vr.Intact() || vr.Checked == 0 {
		t.Errorf("audit verify through hubd: %+v, %v", vr, err)
	}
	live, err := ac.SessionsAt(ctx, time.Now(), projections.Filter{})
	if err != nil || len(live) != 1 || live[0].ID != w.GetSessionId() {
		t.Errorf("audit sessions at now: %+v, %v; want %s", live, err, w.GetSessionId())
	}
	bad, err := audit.NewClient(p.grpc, "wrong-token-wrong-token")
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.Verify(ctx, audit.VerifyQuery{}, nil); !errors.Is(err, audit.ErrUnauthenticated) {
		t.Errorf("audit verify with a wrong token: %v; want Unauthenticated", err)
	}
	// Every series docs/operations.md names is served (admin calls were
	// made above, so the labelled ones have values too).
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	// Rows marked "cluster mode" are served only in cluster mode
	// (TestDeadNodeSessionsEndAsLost reads them).
	var documented []string
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.Contains(line, "| cluster mode") {
			documented = append(documented, regexp.MustCompile(`sessionledger_[a-z_]+`).FindAllString(line, -1)...)
		}
	}
	if len(documented) < 10 {
		t.Fatalf("found only %d metric names in docs/operations.md: %v", len(documented), documented)
	}
	_, body = get("/metrics")
	for _, name := range documented {
		if !regexp.MustCompile(`(?m)^` + name + `(_bucket|_sum|_count)?[{ ]`).MatchString(body) {
			t.Errorf("docs/operations.md names %s; /metrics does not serve it", name)
		}
	}
	if !strings.Contains(body, `sessionledger_admin_calls_total{code="OK",method="Admin/ListSessions"} 1`) ||
		!strings.Contains(body, `sessionledger_admin_calls_total{code="Unauthenticated",method="Admin/ListSessions"} 1`) ||
		!strings.Contains(body, `sessionledger_admin_calls_total{code="OK",method="Audit/Verify"}`) {
		t.Errorf("/metrics does not count the admin calls made:\n%s", grepLines(body, "sessionledger_admin_calls_total"))
	}
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestSecondHubdOnSameData fails fast and says why, instead of hanging on
// the file lock.
func TestSecondHubdOnSameData(t *testing.T) {
	data := t.TempDir()
	first := startHubd(t, data)
	start := time.Now()
	second := launch(t, data)
	select {
	case <-second.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("second hubd did not give up")
	}
	if second.code != exitFailure || !strings.Contains(second.output(), "locked") {
		t.Errorf("second hubd: exit %d, output %q; want exit 1 saying the ledger is locked", second.code, second.output())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("second hubd took %s to give up", d)
	}
	first.signal(syscall.SIGTERM)
}

// TestRefusals: unsafe or malformed configuration is refused with one
// clear message and exit code 2, before anything is created.
func TestRefusals(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"open listener without JWT", []string{"--listen", "0.0.0.0:0"}, nil, "refusing to listen on 0.0.0.0:0 without --jwt-secret-file"},
		{"empty host without JWT", []string{"--listen", ":7070"}, nil, "refusing to listen on :7070"},
		{"bad duration flag", []string{"--heartbeat", "soon"}, nil, "invalid argument \"soon\" for \"--heartbeat\" flag"},
		{"bad env", nil, map[string]string{"HUBD_HEARTBEAT": "soon"}, "HUBD_HEARTBEAT=\"soon\": invalid value for --heartbeat"},
		{"bad log format", []string{"--log-format", "xml"}, nil, "--log-format \"xml\": want text or json"},
		{"short JWT secret", []string{"--jwt-secret-file", "SHORT"}, nil, "want at least 32"},
		{"JWT secret others can read", []string{"--jwt-secret-file", "OPEN"}, nil, "has mode 0644; want 0600"},
		{"missing JWT secret file", []string{"--jwt-secret-file", "/nonexistent/jwt"}, nil, "--jwt-secret-file: open /nonexistent/jwt"},
		{"stray argument", []string{"serve"}, nil, "stray argument \"serve\": hubd takes only flags"},
		{"single-dash long flag", []string{"-data", "x"}, nil, "-data: flags take two dashes: --data"},
		{"unknown flag", []string{"--bogus"}, nil, "hubd: unknown flag: --bogus (see hubd --help)"},
		{"console off loopback without TLS", []string{"--console-listen", "0.0.0.0:0"}, nil, "refusing to serve the console on 0.0.0.0:0 without TLS"},
		{"tls half", []string{"--tls-cert", "x.pem"}, nil, "--tls-cert and --tls-key go together"},
		{"tls files missing", []string{"--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"}, nil, "--tls-cert/--tls-key: open /nonexistent/cert.pem"},
		{"tls files not PEM", []string{"--tls-cert", "SHORT", "--tls-key", "SHORT"}, nil, "--tls-cert/--tls-key: tls: failed to find any PEM data"},
		{"idle below heartbeat", []string{"--idle-timeout", "5s"}, nil, "--idle-timeout 5s: want 0 (3 heartbeats) or at least the --heartbeat interval 10s"},
		{"small stream window", []string{"--grpc-stream-window", "1024"}, nil, "--grpc-stream-window 1024: want 65535 to 2147483647"},
		{"negative read buffer", []string{"--grpc-read-buffer", "-1"}, nil, "--grpc-read-buffer -1: want 0 (none) or more"},
		{"no write buffer", []string{"--grpc-write-buffer", "0"}, nil, "--grpc-write-buffer 0: want a positive number of bytes"},
		{"negative connection age", []string{"--max-connection-age", "-1s"}, nil, "--max-connection-age -1s"},
		{"zero keepalive", []string{"--keepalive-min-time", "0s"}, nil, "--keepalive-min-time 0s: want a positive duration"},
		{"open websocket without JWT", []string{"--ws-listen", "0.0.0.0:0"}, nil, "refusing to serve WebSocket on 0.0.0.0:0 without --jwt-secret-file"},
		{"bad websocket address", []string{"--ws-listen", "7072"}, nil, "--ws-listen \"7072\""},
		{"bad origin", []string{"--ws-allowed-origins", "https://ok.example, app.example"}, nil, "--ws-allowed-origins: \"app.example\": want scheme://host[:port] or *"},
		{"websocket handshake timeout", []string{"--ws-handshake-timeout", "0s"}, nil, "--ws-handshake-timeout 0s: want a positive duration"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			args := []string{"--data", data, "--metrics", "off"}
			for _, a := range c.args {
				if a == "SHORT" {
					a = filepath.Join(dir, "short.key")
					if err := os.WriteFile(a, []byte("too-short"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				if a == "OPEN" {
					a = filepath.Join(dir, "open.key")
					if err := os.WriteFile(a, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
						t.Fatal(err)
					}
					if err := os.Chmod(a, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				args = append(args, a)
			}
			var out bytes.Buffer
			lookup := func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }
			code := run(args, lookup, &out, make(chan os.Signal))
			if code != exitUsage || !strings.Contains(out.String(), c.want) {
				t.Fatalf("exit %d, output:\n%s\nwant exit 2 and %q", code, out.String(), c.want)
			}
			if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("refused start created %s (%v)", data, err)
			}
		})
	}
}

// TestConnectionFlags: the gRPC connection settings reach the daemon's
// configuration, --grpc-read-buffer 0 meaning no read buffer.
func TestConnectionFlags(t *testing.T) {
	o, err := parseOptions([]string{"--grpc-read-buffer", "0", "--grpc-write-buffer", "8192", "--grpc-private-write-buffer",
		"--grpc-stream-window", "131072", "--grpc-conn-window", "262144", "--grpc-dynamic-window", "--max-connection-age", "1h",
		"--max-connection-age-grace", "1m", "--keepalive-time", "30s", "--keepalive-timeout", "5s", "--keepalive-min-time", "10s"},
		func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got := daemonConfig(o, slog.New(slog.DiscardHandler)).Conn
	want := daemon.ConnOptions{ReadBufferSize: -1, WriteBufferSize: 8192, PrivateWriteBuffer: true, StreamWindow: 131072, ConnWindow: 262144,
		DynamicWindow: true, MaxConnectionAge: time.Hour, MaxConnectionAgeGrace: time.Minute, KeepaliveTime: 30 * time.Second,
		KeepaliveTimeout: 5 * time.Second, KeepaliveMinTime: 10 * time.Second}
	if got != want {
		t.Fatalf("got %+v; want %+v", got, want)
	}
	o, err = parseOptions(nil, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c := daemonConfig(o, slog.New(slog.DiscardHandler)).Conn; c.ReadBufferSize != daemon.DefaultReadBufferSize || c.DynamicWindow ||
		c.StreamWindow != daemon.DefaultStreamWindow || c.ConnWindow != daemon.DefaultConnWindow || c.PrivateWriteBuffer {
		t.Fatalf("defaults %+v; want a pooled %d-byte read buffer, a shared write buffer and static windows", c, daemon.DefaultReadBufferSize)
	}
}

func TestEnvironmentEquivalents(t *testing.T) {
	env := map[string]string{"HUBD_LISTEN": "127.0.0.1:9999", "HUBD_MAX_PER_USER": "3", "HUBD_ONE_PER_DEVICE": "false", "HUBD_HEARTBEAT": "2s"}
	o, err := parseOptions([]string{"--heartbeat", "4s"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.listen != "127.0.0.1:9999" || o.maxPerUser != 3 || o.onePerDevice || o.heartbeat != 4*time.Second {
		t.Fatalf("options %+v: want env applied and the command line winning", o)
	}
}

// TestSecondSignalForces: a session whose client stopped reading keeps a
// graceful shutdown waiting; the second SIGTERM closes it at once, its end
// is still recorded, and hubd exits (1: the stop was not clean).
func TestSecondSignalForces(t *testing.T) {
	data := t.TempDir()
	p := startHubd(t, data, "--shutdown-timeout", "60s", "--graceful-timeout", "30s")
	_, w := session(t, p.grpc, "sloth", "d") // never reads again
	tok, err := hubapi.FirstAdminToken(filepath.Join(data, hubapi.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	admin := hubpb.NewAdminClient(dialConn(t, p.grpc))
	big := make([]byte, 60<<10)
	for range 40 {
		if _, err := admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: "sloth", Topic: "bulk", Payload: big}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		t.Fatalf("hubd exited on the first signal although a session was stuck:\n%s", p.output())
	case <-time.After(500 * time.Millisecond):
	}
	start := time.Now()
	code := p.signal(syscall.SIGTERM)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("second signal took %s to stop hubd", d)
	}
	if code != exitFailure || !strings.Contains(p.output(), "second signal: forcing shutdown") {
		t.Errorf("exit %d; want 1 after a forced stop:\n%s", code, p.output())
	}
	if got := ends(t, data)[w.GetSessionId()]; got != eventpb.DisconnectCause_DISCONNECT_CAUSE_SERVER_SHUTDOWN {
		t.Errorf("stuck session end cause %v; want SERVER_SHUTDOWN", got)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key as
// PEM files in dir and returns their paths and a pool that trusts it.
func writeCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	c := testtls.SelfSigned(t)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, c.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, c.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, c.Pool
}

// TestTLS: with --tls-cert/--tls-key hubd serves TLS (a client that trusts
// the certificate holds a session) and does not warn about clear text.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := writeCert(t, dir)
	p := startHubd(t, filepath.Join(dir, "data"), "--tls-cert", certFile, "--tls-key", keyFile)
	conn, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sessionOn(t, conn, "tls", "d")
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.output())
	}
	if strings.Contains(p.output(), "without TLS") {
		t.Errorf("hubd with TLS warned about clear text:\n%s", p.output())
	}
}

// TestWarnsWithoutTLSOffLoopback: on an address other machines can reach
// and without TLS, hubd starts (a JWT secret is set) but warns.
func TestWarnsWithoutTLSOffLoopback(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "jwt.key")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startHubd(t, filepath.Join(dir, "data"), "--listen", "0.0.0.0:0", "--jwt-secret-file", secret)
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.output())
	}
	if !strings.Contains(p.output(), `"level":"WARN","msg":"listening on a non-loopback address without TLS`) {
		t.Errorf("no clear-text warning:\n%s", p.output())
	}
}

// TestVersionAndHelp: --version prints the build, --help the flags with
// two dashes; both exit 0.
func TestVersionAndHelp(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"--version"}, func(string) (string, bool) { return "", false }, &out, make(chan os.Signal)); code != 0 || !strings.HasPrefix(out.String(), "hubd ") {
		t.Fatalf("--version: exit %d, %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"--help"}, func(string) (string, bool) { return "", false }, &out, make(chan os.Signal)); code != 0 ||
		!strings.Contains(out.String(), "--console-listen") || !strings.Contains(out.String(), "--data string") {
		t.Fatalf("--help: exit %d, %q", code, out.String())
	}
}

// TestSIGHUPReloadsAdminTokens: an admin token added to the file works
// after SIGHUP (with the watcher off), without a restart, and its role
// holds: an auditor may list sessions, not kick.
func TestSIGHUPReloadsAdminTokens(t *testing.T) {
	data := t.TempDir()
	p := startHubd(t, data, "--watch-interval", "0")
	tok, err := hubapi.AddAdminToken(data, "audit-hup", hubapi.RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	conn := dialConn(t, p.grpc)
	admin := hubpb.NewAdminClient(conn)
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := admin.ListSessions(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok.Token), &hubpb.ListSessionsRequest{})
		return err
	}
	if err := call(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("before SIGHUP: %v; want Unauthenticated (the watcher is off)", err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for call() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the token still refused after SIGHUP:\n%s", p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = admin.Kick(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok.Token), &hubpb.KickRequest{User: "x", Reason: "x"})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("auditor kick: %v; want PermissionDenied", err)
	}
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, p.output())
	}
}
