package ledger_test

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

const crashChildEnv = "LEDGER_CRASH_CHILD"

// TestCrashChild is the child side of TestCrashKill9: when started by it,
// it appends from many goroutines forever and prints "seq id" for every
// append that returned success. Run on its own it does nothing.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("child process of TestCrashKill9")
	}
	s, err := ledger.Open(path, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	// Merge the index tail every few commits, so kills also land in merges.
	s.SetMergeThreshold(2048)
	fmt.Println("ready")
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for w := 0; w < 32; w++ {
		go func() {
			for i := 0; ; i++ {
				n := 1 + i%3 // multi-event appends must be all-or-nothing too
				evs := make([]*eventpb.Event, n)
				for j := range evs {
					evs[j] = ledgertest.SizedEvent(fmt.Sprintf("u%d", w), fmt.Sprintf("s%d-%d", w, i), 200)
				}
				st, err := s.Append(ctx, evs...)
				if err != nil {
					fmt.Fprintln(os.Stderr, "child append:", err)
					os.Exit(4)
				}
				mu.Lock()
				for _, x := range st {
					fmt.Fprintf(out, "%d %s\n", x.Seq, x.ID)
				}
				// Flush while holding the lock: a line reaches the parent
				// only after its append returned.
				_ = out.Flush()
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestCrashKill9 starts a child that appends concurrently, kills it with
// SIGKILL at a random moment, and checks that every append the child saw
// succeed is in the file with the same id, that seqs are dense and that the
// chain verifies. Many rounds on one file, so recovery is also appended to.
func TestCrashKill9(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("in the child")
	}
	rounds := 25
	if testing.Short() {
		rounds = 8
	}
	path := filepath.Join(t.TempDir(), "ledger.db")
	acked := map[uint64]string{}
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		select {
		case l := <-lines:
			if l != "ready" {
				t.Fatalf("round %d: child said %q; stderr: %s", round, l, stderr.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("round %d: child did not start; stderr: %s", round, stderr.String())
		}
		kill := time.After(time.Duration(5+rand.IntN(120)) * time.Millisecond)
		n := 0
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				seqStr, id, _ := strings.Cut(l, " ")
				seq, err := strconv.ParseUint(seqStr, 10, 64)
				if err != nil {
					t.Fatalf("round %d: child printed %q", round, l)
				}
				acked[seq] = id
				n++
			case <-kill:
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				kill = nil
			}
		}
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v, not SIGKILL; stderr: %s", round, err, stderr.String())
		}

		s, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		ledgertest.Check(t, s)
		head := s.Head().Seq
		for seq, id := range acked {
			r, err := s.Get(seq)
			if err != nil {
				t.Fatalf("round %d: acked seq %d lost: %v", round, seq, err)
			}
			if r.ID.String() != id {
				t.Fatalf("round %d: seq %d has id %s; the child was told %s", round, seq, r.ID, id)
			}
		}
		_ = s.Close()
		t.Logf("round %d: %d acked appends this round, head %d", round, n, head)
		if t.Failed() {
			return
		}
	}
	if len(acked) == 0 {
		t.Fatal("no append was acknowledged in any round: the test checked nothing")
	}
}
