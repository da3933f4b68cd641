package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
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
	if r.Memory.Heap == 0 || r.Memory.RSS == 0 || r.Memory.Goroutines == 0 {
		t.Errorf("memory: %+v", r.Memory)
	}
	// Both hubd runs logged, and the first log was closed before the
	// second opened it again: one file, appended.
	if fi, err := os.Stat(filepath.Join(data, "hubd.log")); err != nil || fi.Size() == 0 {
		t.Errorf("hubd.log: %v", err)
	}
}
