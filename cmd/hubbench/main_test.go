package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestSmall runs the whole benchmark against a real hubd child process
// with a few sessions: every phase must complete and report consistent
// figures (this checks the tool, not the speed).
func TestSmall(t *testing.T) {
	out := filepath.Join(t.TempDir(), "result.json")
	err := runBench(options{sessions: 40, perConn: 10, concurrency: 8, kicks: 5, fanouts: 2, storm: true,
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
	if r.Kick.N != 5 || r.Kick.Timeouts != 0 || !r.Kick.Durable || r.Kick.EndP50 <= 0 || r.Kick.EndMax < r.Kick.EndP99 {
		t.Errorf("kick: %+v", r.Kick)
	}
	if r.Fanout.Sessions != 35 || len(r.Fanout.Seconds) != 2 || r.Fanout.Duplicates != 0 {
		t.Errorf("fan-out: %+v", r.Fanout)
	}
	if r.Storm.Sessions != 35 || r.Storm.Resumed != 35 || r.Storm.AdviceMinMs < 100 || r.Storm.AdviceMaxMs > 400 {
		t.Errorf("storm: %+v", r.Storm)
	}
	if r.Memory.Heap == 0 || r.Memory.RSS == 0 || r.Memory.Goroutines == 0 {
		t.Errorf("memory: %+v", r.Memory)
	}
}
