package cluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger/cluster"
)

// TestSettings: a setting one node creates is read by another at its
// revision; a change made at a stale revision is refused with
// ErrSettingChanged and stores nothing, so two nodes that change it at
// once cannot both win.
func TestSettings(t *testing.T) {
	ms := testCluster(t, 2)
	a, b := ms[0].node, ms[1].node
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if v, rev, err := a.Setting(ctx, "k"); err != nil || v != nil || rev != 0 {
		t.Fatalf("unset setting: %q, %d, %v; want nil at revision 0", v, rev, err)
	}
	r1, err := a.SetSetting(ctx, "k", []byte("one"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.SetSetting(ctx, "k", []byte("created twice"), 0); !errors.Is(err, cluster.ErrSettingChanged) {
		t.Fatalf("second create: %v; want ErrSettingChanged", err)
	}
	var v []byte
	var rev uint64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if v, rev, err = b.Setting(ctx, "k"); err == nil && string(v) == "one" && rev == r1 {
			break
		}
		if err != nil || (rev != 0 && rev != r1) || time.Now().After(deadline) {
			t.Fatalf("node b reads %q at %d, %v; want \"one\" at %d", v, rev, err, r1)
		}
	}
	r2, err := b.SetSetting(ctx, "k", []byte("two"), r1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetSetting(ctx, "k", []byte("stale"), r1); !errors.Is(err, cluster.ErrSettingChanged) {
		t.Fatalf("change at a stale revision: %v; want ErrSettingChanged", err)
	}
	// Reads come from the nearest replica: node a sees the change within
	// moments, never an older value once it saw it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		v, rev, err := a.Setting(ctx, "k")
		if err == nil && string(v) == "two" && rev == r2 {
			break
		}
		if err != nil || rev > r2 || (rev != r1 && rev != r2) || time.Now().After(deadline) {
			t.Fatalf("node a reads %q at %d, %v; want \"two\" at %d", v, rev, err, r2)
		}
	}
}
