package projections_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/projections"
)

// BenchmarkRevokeToken measures one token_revoked event by jti applied to
// a state with live sessions, each holding a token of its own (op=revoke:
// Apply, which marks the token's holder), and the look-up the hub makes
// before it records one (op=holders: TokenHolders). Both cost the token's
// holders, not the live table: compare the live= sub-benchmarks. It uses
// only the package's API, so the same file measures an older build.
func BenchmarkRevokeToken(b *testing.B) {
	for _, op := range []string{"revoke", "holders"} {
		for _, live := range []int{1_000, 10_000, 100_000} {
			b.Run(fmt.Sprintf("op=%s/live=%d", op, live), func(b *testing.B) {
				st := projections.New()
				seq, at := uint64(0), t0
				apply := func(r *ledger.Record) projections.Change {
					seq++
					at = at.Add(time.Millisecond)
					r.Seq, r.Time, r.Topic = seq, at, ledger.EventsTopic
					return st.Apply(r)
				}
				exp := t0.Add(1000 * time.Hour)
				for i := range live {
					apply(&ledger.Record{Event: connectWith(fmt.Sprintf("user-%d", i), "phone", fmt.Sprintf("s-%d", i), fmt.Sprintf("tok-%d", i), t0, exp)})
				}
				if st.Live() != live {
					b.Fatalf("%d live; want %d", st.Live(), live)
				}
				tokens := make([]string, live)
				for i := range tokens {
					tokens[i] = fmt.Sprintf("tok-%d", i)
				}
				b.ReportAllocs()
				b.ResetTimer()
				switch op {
				case "revoke":
					// Each revocation lapses later than the last of its
					// token (one an hour past its record), so a token
					// revoked again widens it: every record is applied in full.
					for i := 0; i < b.N; i++ {
						ch := apply(&ledger.Record{Event: revokeToken(tokens[i%live], at.Add(time.Hour+time.Millisecond))})
						if ch.Revoked == nil || i < live && len(ch.Pending) != 1 {
							b.Fatalf("revocation %d: %+v; want it in force, marking one session the first time", i, ch)
						}
					}
				case "holders":
					for i := 0; i < b.N; i++ {
						if h := st.TokenHolders(tokens[i%live]); len(h) != 1 {
							b.Fatalf("holders of %s: %d; want 1", tokens[i%live], len(h))
						}
					}
				}
			})
		}
	}
}
