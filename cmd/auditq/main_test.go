package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sessionledger/sessionledger/audit/audittest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fixture is the path of the fixture ledger, built once for the package.
var fixture string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "auditq-fixture-")
	if err != nil {
		panic(err)
	}
	fixture = filepath.Join(dir, "ledger.db")
	if err := audittest.BuildFile(context.Background(), fixture); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// result is what one auditq run printed and returned.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// now is "now" for relative times in the tests: two hours after the
// fixture starts.
var now = audittest.Start.Add(2 * time.Hour)

// run runs auditq in process with args, an empty environment (plus env)
// and a clock at now. The default source's hubd probe goes to a closed
// port unless env sets "localAddr"; env's "connectTimeout" sets the bound
// on connecting to a hub.
func run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	a := newApp(&out, &errb, func(k string) string { return env[k] })
	a.now = func() time.Time { return now }
	a.localAddr = closedAddr(t)
	a.probeTimeout = 300 * time.Millisecond
	if v, ok := env["localAddr"]; ok {
		a.localAddr = v
	}
	if v, ok := env["connectTimeout"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		a.connectTimeout = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	code := a.run(ctx, args)
	return result{out.String(), errb.String(), code, time.Since(start)}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	return "127.0.0.1:1" // port 1 (tcpmux) is not served on test machines
}

// goldenCase is one query, run in each output format.
type goldenCase struct {
	name string
	args []string
}

var goldenCases = []goldenCase{
	{"events", []string{"events"}},
	{"events_kicks_of_mallory", []string{"events", "--user", "mallory", "--type", "kick_requested", "--type", "user_banned"}},
	{"events_by_operator", []string{"events", "--actor", "ops-olga", "--since", "2026-03-01T10:30:00Z", "--until", "2026-03-01T11:10:00Z"}},
	{"events_session_limit", []string{"events", "--session", "s-bob-2", "--limit", "2"}},
	{"events_relative_device", []string{"events", "--since", "70m", "--device", "pc"}},
	{"events_ban_tz", []string{"--tz", "Asia/Kolkata", "events", "--type", "user_banned"}},
	{"sessions_at_incident", []string{"sessions", "--at", "2026-03-01T10:15:00Z"}},
	{"sessions_of_user", []string{"sessions", "--at", "2026-03-01T11:06:00Z", "--user", "mallory"}},
	{"bans_at", []string{"bans", "--at", "2026-03-01T10:20:00Z"}},
	{"timeline_user", []string{"timeline", "--user", "mallory"}},
	{"timeline_user_tz", []string{"--tz", "America/New_York", "timeline", "--user", "mallory"}},
	{"timeline_session_superseded", []string{"timeline", "--session", "s-alice-1"}},
	{"timeline_session_resumed", []string{"timeline", "--session", "s-bob-1"}},
	{"replay_incident", []string{"replay", "--from", "2026-03-01T10:14:00Z", "--to", "2026-03-01T10:22:00Z"}},
	{"replay_user", []string{"replay", "--from", "2026-03-01T10:00:00Z", "--user", "bob"}},
	{"verify", []string{"verify"}},
	{"verify_range", []string{"verify", "--from", "5", "--to", "2026-03-01T10:30:00Z"}},
	{"stats", []string{"stats"}},
	{"stats_window", []string{"stats", "--since", "2026-03-01T10:15:00Z", "--until", "2026-03-01T10:45:00Z"}},
}

// exportCases have their format in the args. Several cases share a
// golden file: the global --csv and --json choose export's format too.
var exportCases = []goldenCase{
	{"export_jsonl", []string{"export", "--format", "jsonl", "--user", "bob"}},
	{"export_jsonl", []string{"export", "--user", "bob"}},
	{"export_jsonl", []string{"--json", "export", "--user", "bob"}},
	{"export_jsonl", []string{"export", "--format", "jsonl", "--json", "--user", "bob"}},
	{"export_csv", []string{"export", "--format", "csv", "--since", "2026-03-01T10:15:00Z", "--until", "2026-03-01T10:16:00Z"}},
	{"export_csv", []string{"export", "--csv", "--since", "2026-03-01T10:15:00Z", "--until", "2026-03-01T10:16:00Z"}},
	{"export_csv", []string{"--csv", "export", "--format", "csv", "--since", "2026-03-01T10:15:00Z", "--until", "2026-03-01T10:16:00Z"}},
}

var formats = []struct{ name, flag string }{{"table", ""}, {"json", "--json"}, {"csv", "--csv"}}

// checkGolden compares normalized output with testdata/name.golden.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	got = audittest.Normalize(got)
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/auditq -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s: output differs from the golden file\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// runGolden runs every golden case against the source that src's flags
// name, comparing with the golden files (which --db on the fixture wrote).
func runGolden(t *testing.T, env map[string]string, src ...string) {
	for _, c := range goldenCases {
		for _, f := range formats {
			t.Run(c.name+"/"+f.name, func(t *testing.T) {
				args := append(append([]string{}, src...), c.args...)
				if f.flag != "" {
					args = append(args, f.flag)
				}
				r := run(t, env, args...)
				if r.code != 0 {
					t.Fatalf("auditq %s: exit %d; want 0\n%s", strings.Join(args, " "), r.code, r.stderr)
				}
				checkGolden(t, c.name+"."+f.name, r.stdout)
			})
		}
	}
	for _, c := range exportCases {
		t.Run(c.name, func(t *testing.T) {
			args := append(append([]string{}, src...), c.args...)
			r := run(t, env, args...)
			if r.code != 0 {
				t.Fatalf("auditq %s: exit %d; want 0\n%s", strings.Join(args, " "), r.code, r.stderr)
			}
			checkGolden(t, c.name, r.stdout)
		})
	}
}

func TestGoldenFromFile(t *testing.T) {
	runGolden(t, nil, "--db", fixture)
}

// TestGoldenThroughHub asks a live hub (real gRPC, admin token) the same
// questions and expects the same answers, then the same from a hot backup
// of the running hub's ledger.
func TestGoldenThroughHub(t *testing.T) {
	if *update {
		t.Skip("golden files are written from the file source")
	}
	h := audittest.StartHub(t, fixture)
	t.Run("addr", func(t *testing.T) {
		runGolden(t, nil, "--addr", h.Addr, "--token", h.Token)
	})
	t.Run("backup", func(t *testing.T) {
		backup := filepath.Join(t.TempDir(), "backup.db")
		if _, err := h.Store.Backup(context.Background(), backup); err != nil {
			t.Fatal(err)
		}
		runGolden(t, nil, "--db", backup)
	})
}

func TestExportToFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bob.jsonl")
	r := run(t, nil, "--db", fixture, "export", "--format", "jsonl", "--user", "bob", "-o", out)
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q; want 0 and nothing on stdout\n%s", r.code, r.stdout, r.stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "export_jsonl", string(b))
}

func TestHelpShowsAnExampleForEveryCommand(t *testing.T) {
	a := newApp(nil, nil, func(string) string { return "" })
	names := []string{""}
	for _, c := range a.rootCommand().Commands() {
		if c.Name() != "help" && c.Name() != "completion" {
			names = append(names, c.Name())
		}
	}
	for _, name := range names {
		t.Run("auditq "+name, func(t *testing.T) {
			r := run(t, nil, strings.Fields(name+" --help")...)
			if r.code != 0 {
				t.Fatalf("exit %d; want 0\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, strings.TrimSpace("auditq "+name)+" ") {
				t.Errorf("auditq %s --help shows no example:\n%s", name, r.stdout)
			}
		})
	}
}
