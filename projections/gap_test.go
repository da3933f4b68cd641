package projections_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/projections"
)

// TestReplayRefusesAGap: a record deleted from the middle of the log makes
// every replay fail naming it, rather than build a state that silently
// lacks it (a lost disconnect would leave a session live forever).
func TestReplayRefusesAGap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 10 {
		if _, err := s.Append(ctx, connect("u", fmt.Sprintf("d%d", i), fmt.Sprintf("s%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		log := tx.Bucket([]byte("log"))
		return errors.Join(log.Delete(binary.BigEndian.AppendUint64(nil, 4)), log.Delete(binary.BigEndian.AppendUint64(nil, 5)))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err = ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	for name, fn := range map[string]func(projections.Change){"raw": nil, "full": func(projections.Change) {}} {
		st := projections.New()
		err := projections.Replay(ctx, s, st, 0, fn)
		if !errors.Is(err, ledger.ErrCorrupt) || !strings.Contains(err.Error(), "seq 4 to 5 missing") {
			t.Errorf("%s replay: %v; want ErrCorrupt naming seqs 4 to 5", name, err)
		}
	}
	if _, err := projections.StateAt(ctx, s, 8); !errors.Is(err, ledger.ErrCorrupt) {
		t.Errorf("StateAt(8) = %v; want ErrCorrupt", err)
	}
	// Before the gap the log is sound.
	st, err := projections.StateAt(ctx, s, 3)
	if err != nil || st.Live() != 3 {
		t.Errorf("StateAt(3) = %v live, %v; want 3 live, no error", st.Live(), err)
	}
}
