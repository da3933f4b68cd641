package jsclient_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
	"time"
)

// goTool is the go command that runs this test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// skipLoudly skips with a message that stands out in go test's output
// (printed even without -v): a skipped JavaScript suite must not pass for
// a run one.
func skipLoudly(t *testing.T, why string) {
	t.Helper()
	msg := "!!! SKIPPED: the JavaScript client's tests did not run: " + why + " !!!"
	if os.Getenv("SESSIONLEDGER_REQUIRE_NODE") != "" {
		t.Fatal(why + " (SESSIONLEDGER_REQUIRE_NODE is set: .ci/run installed what this test needs)")
	}
	fmt.Fprintln(os.Stderr, msg)
	t.Skip(msg)
}

// TestJavaScriptClient runs the JavaScript client's own tests (Node's test
// runner, clients/js/test) against real hubd and hubctl binaries built
// from this tree.
func TestJavaScriptClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		skipLoudly(t, "node not found in PATH (.ci/run installs Debian's nodejs)")
	}
	// Node's own WebSocket where it has one (22+; 20 with the flag); the
	// tests fall back to testing/ws.js on a Node without (Debian's 18).
	var flags []string
	if out, err := exec.Command(node, "-e", "process.stdout.write(typeof WebSocket)").Output(); err != nil {
		t.Fatalf("%s does not run: %v", node, err)
	} else if string(out) != "function" {
		if out, err := exec.Command(node, "--experimental-websocket", "-e", "process.stdout.write(typeof WebSocket)").Output(); err == nil && string(out) == "function" {
			flags = append(flags, "--experimental-websocket")
		}
	}
	bin := t.TempDir()
	build := exec.Command(goTool(), "build", "-o", bin+string(filepath.Separator), "./cmd/hubd", "./cmd/hubctl")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build hubd and hubctl: %v\n%s", err, out)
	}
	cmd := exec.Command(node, append(flags, "--test", "--test-reporter=spec", "test/")...)
	cmd.Env = append(os.Environ(), "SL_HUBD="+filepath.Join(bin, "hubd"), "SL_HUBCTL="+filepath.Join(bin, "hubctl"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("node --test did not finish within 3 minutes:\n%s", out.String())
	}
	if err != nil {
		t.Fatalf("node --test failed (%v) after %s:\n%s", err, time.Since(start).Round(time.Millisecond), out.String())
	}
	// Node's summary line "pass N": a run that found no test passes too.
	if m := regexp.MustCompile(`(?m)^. pass (\d+)$`).FindStringSubmatch(out.String()); m == nil || m[1] == "0" {
		t.Fatalf("node --test ran no test:\n%s", out.String())
	}
	t.Logf("node --test passed in %s:\n%s", time.Since(start).Round(time.Millisecond), out.String())
}
