package main

import (
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/audit"
)

func TestProgressLine(t *testing.T) {
	for _, c := range []struct {
		p       audit.VerifyProgress
		elapsed time.Duration
		want    string
	}{
		// --from a time resolved to seq 1000: the rate counts from there,
		// not from seq 0.
		{audit.VerifyProgress{From: 1000, To: 11000, Seq: 2999}, time.Second, "verifying… seq 2999 of 1000 to 11000 (20%)  2000 records/s"},
		{audit.VerifyProgress{From: 1, To: 4, Seq: 4}, 2 * time.Second, "verifying… seq 4 of 1 to 4 (100%)  2 records/s"},
		{audit.VerifyProgress{Seq: 4096}, time.Second, "verifying… seq 4096"}, // an older hub
	} {
		if got := progressLine(c.p, c.elapsed); got != c.want {
			t.Errorf("progressLine(%+v, %v) = %q; want %q", c.p, c.elapsed, got, c.want)
		}
	}
}
