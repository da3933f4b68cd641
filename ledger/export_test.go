package ledger

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// SetFailpoint makes every later commit call fn first; a non-nil error
// aborts that commit as a disk error would.
func (s *Store) SetFailpoint(fn func() error) { s.failpoint = fn }

// BreakFileForTest replaces bbolt's file descriptor with a read-only one on
// /dev/null, so the next commit's writes really fail (EBADF) while the fd
// number stays owned by bbolt.
func BreakFileForTest(s *Store) error {
	want, err := filepath.EvalSymlinks(s.path)
	if err != nil {
		return err
	}
	want, _ = filepath.Abs(want)
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer null.Close()
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || target != want {
			continue
		}
		fd, _ := strconv.Atoi(e.Name())
		return syscall.Dup2(int(null.Fd()), fd)
	}
	return fmt.Errorf("no open fd for %s", want)
}
