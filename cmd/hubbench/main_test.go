package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/daemon"
)

// TestMain checks that a run leaves no goroutine behind: sessions, hubd's
// log copier, HTTP connections to its metrics.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSmall runs the whole benchmark against a real hubd child process
// with a few sessions: every phase must complete and report consistent
// figures (this checks the tool, not the speed).
func TestSmall(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "result.json")
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	err := runBench(options{sessions: 40, perConn: 10, concurrency: 8, kicks: 5, fanouts: 2, storm: true, data: data,
		jsonOut: out, hubdArgs: "--shutdown-reconnect 100ms --shutdown-jitter 300ms"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Sessions != 40 || r.Connections != 4 || r.Connect.Failures != 0 || r.Connect.PerSecond <= 0 {
		t.Errorf("connect: %+v", r.Connect)
	}
	if r.Kick.N != 5 || r.Kick.Timeouts != 0 || !r.Kick.Durable || r.Kick.EndP50 <= 0 || r.Kick.EndMax < r.Kick.EndP99 ||
		r.Kick.LiveMin < 35 || r.Kick.LiveMin > r.Kick.LiveMedian || r.Kick.LiveMedian > 39 {
		t.Errorf("kick: %+v", r.Kick)
	}
	// Kicked sessions resume: fan-out and storm cover all 40.
	if r.Fanout.Sessions != 40 || len(r.Fanout.Seconds) != 2 {
		t.Errorf("fan-out: %+v", r.Fanout)
	}
	// The client waits at least the advice (100-400ms) and its backoff (at
	// most 500ms: a kicked client is at attempt 1), plus at most a fifth.
	if r.Storm.Sessions != 40 || r.Storm.Resumed != 40 || r.Storm.AdviceMinMs < 100 || r.Storm.AdviceMaxMs > 400 ||
		r.Storm.WaitMinMs < r.Storm.AdviceMinMs || r.Storm.WaitMaxMs > 1.2*500 {
		t.Errorf("storm: %+v", r.Storm)
	}
	// 40 first connects, 5 resumes after the kicks, 40 after the storm; each
	// session got both fan-out rounds, none twice.
	if c := r.Clients; c.Connects != 85 || c.Resumes != 45 || c.Delivered != 80 || c.Duplicates != 0 {
		t.Errorf("clients: %+v", c)
	}
	if r.Memory.Heap == 0 || r.Memory.RSS == 0 || r.Memory.Goroutines == 0 || r.Memory.BaselineGor == 0 || r.Memory.BaselineStack == 0 {
		t.Errorf("memory: %+v", r.Memory)
	}
	// Per session, net of the baseline like RSS and heap: a session costs
	// hubd a goroutine or two, not the baseline's dozens spread over 40.
	if g := r.Memory.GoroutinesPerSs; g <= 0 || g > 4 || r.Memory.Goroutines != r.Memory.BaselineGor+uint64(g*40+0.5) {
		t.Errorf("goroutines per session %.2f (of %d, baseline %d); want the added ones over 40 sessions", g, r.Memory.Goroutines, r.Memory.BaselineGor)
	}
	// Both hubd runs (the first and the one after the storm's restart)
	// logged into one file, appended.
	if log, err := os.ReadFile(filepath.Join(data, "hubd.log")); err != nil || bytes.Count(log, []byte(`"msg":"hubd listening"`)) != 2 {
		t.Errorf("hubd.log: %d hubd starts logged, %v; want 2", bytes.Count(log, []byte(`"msg":"hubd listening"`)), err)
	}
}

// TestKickDurabilityCheck: the kick check reads the kicks back from the
// hub's ledger, so it can fail: a kick recorded with its session's end
// passes; a kick that ended no session, or a reply naming another seq or
// session, does not.
func TestKickDurabilityCheck(t *testing.T) {
	const token = "hubbench-test-admin-token-0123"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := daemon.New(daemon.Config{Data: t.TempDir(), Listen: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		Hub: hub.Config{AdminTokens: map[string]string{token: "ops"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(d.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		conn.Close()
		if err := d.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	b := &bench{listen: d.Addr(), token: token, admin: hubpb.NewAdminClient(conn)}
	c, err := client.Dial(ctx, b.listen, client.WithUser("kim", "d"), client.WithReconnect(false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	kick := func(session string) kickDone {
		t.Helper()
		actx, acancel := b.adminCtx(10 * time.Second)
		defer acancel()
		rep, err := b.admin.Kick(actx, &hubpb.KickRequest{SessionId: session, Reason: "hubbench test"})
		if err != nil {
			t.Fatal(err)
		}
		return kickDone{seq: rep.GetSeq(), eventID: rep.GetEventId(), session: session}
	}
	good := kick(c.Session().ID)
	<-c.Done()
	if err := b.kicksRecorded([]kickDone{good}, 10*time.Second); err != nil {
		t.Fatalf("a kick recorded with its end: %v", err)
	}
	nobody := kick("01ARZ3NDEKTSV4RRFFQ69G5FAV") // recorded, but no session ended
	for _, tc := range []struct {
		name string
		k    kickDone
		want string
	}{
		{"no end", nobody, "no session_disconnected"},
		{"wrong seq", kickDone{seq: good.seq + 1000, eventID: good.eventID, session: good.session}, "is not that kick_requested"},
		{"wrong session", kickDone{seq: good.seq, eventID: good.eventID, session: "01ARZ3NDEKTSV4RRFFQ69G5FAW"}, "is not that kick_requested"},
		{"wrong event", kickDone{seq: good.seq, eventID: nobody.eventID, session: good.session}, "is not that kick_requested"},
	} {
		if err := b.kicksRecorded([]kickDone{good, tc.k}, 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// TestUsage: --help and --version exit 0; a bad flag or value is one line
// of error and exit 2.
func TestUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "Usage: hubbench [flags]"},
		{[]string{"--version"}, 0, "hubbench "},
		{[]string{"--sesions", "3"}, 2, "hubbench: unknown flag: --sesions (see hubbench --help)\n"},
		{[]string{"--kicks", "many"}, 2, "hubbench: --kicks \"many\": want a number or auto"},
		{[]string{"--sessions", "5", "--kicks", "5"}, 2, "0 <= --kicks < --sessions"},
		{[]string{"extra"}, 2, "stray argument \"extra\""},
	} {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != c.code || !strings.Contains(out.String()+errb.String(), c.want) || (code == 2 && strings.Count(errb.String(), "\n") != 1) {
			t.Errorf("hubbench %q: exit %d, %q %q; want exit %d and %q on one line", c.args, code, out.String(), errb.String(), c.code, c.want)
		}
	}
}
