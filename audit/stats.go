package audit

import (
	"context"
	"sort"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// Count is one row of a tally.
type Count struct {
	Key   string `json:"key"`
	Count uint64 `json:"count"`
}

// Stats summarizes the events of a window.
type Stats struct {
	// Events is how many events matched; First and Last bound them.
	Events              uint64
	FirstSeq, LastSeq   uint64
	FirstTime, LastTime time.Time
	// ByType counts events per type (short names), ByCause disconnects per
	// cause, both in enum order.
	ByType, ByCause []Count
	// KickedUsers counts sessions ended with cause kicked, per user, most
	// first; KicksByActor and BansByActor count kick and ban orders per
	// operator, most first.
	KickedUsers, KicksByActor, BansByActor []Count
	// RejectedAttempts adds up the connect attempts that connect_rejected
	// events stand for (they are aggregated).
	RejectedAttempts uint64
	// RevokesByActor counts token revocations per operator, most first;
	// RefusedAdminCalls the admin calls refused for their token's role,
	// per token name (admin_call_refused counts added up).
	RevokesByActor, RefusedAdminCalls []Count
}

// Stats counts the events that match f. Memory grows with the number of
// distinct users and operators, not with the number of events. Damaged
// records are skipped and reported as a *CorruptError, with the stats of
// everything else.
func (e *Engine) Stats(ctx context.Context, f Filter) (Stats, error) {
	var st Stats
	byType := map[eventpb.EventType]uint64{}
	byCause := map[eventpb.DisconnectCause]uint64{}
	kicked, kicks, bans := map[string]uint64{}, map[string]uint64{}, map[string]uint64{}
	revokes, refusedCalls := map[string]uint64{}, map[string]uint64{}
	err := e.Events(ctx, f, false, func(r *ledger.Record) error {
		ev := r.Event
		if st.Events == 0 {
			st.FirstSeq, st.FirstTime = r.Seq, r.Time
		}
		st.Events++
		st.LastSeq, st.LastTime = r.Seq, r.Time
		byType[ev.GetType()]++
		switch ev.GetType() {
		case eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED:
			c := ev.GetSessionDisconnected().GetCause()
			byCause[c]++
			if c == eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED {
				kicked[ev.GetUser()]++
			}
		case eventpb.EventType_EVENT_TYPE_KICK_REQUESTED:
			kicks[ev.GetActor()]++
		case eventpb.EventType_EVENT_TYPE_USER_BANNED:
			bans[ev.GetActor()]++
		case eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED:
			n := uint64(ev.GetConnectRejected().GetCount())
			st.RejectedAttempts += max(n, 1)
		case eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED:
			revokes[ev.GetActor()]++
		case eventpb.EventType_EVENT_TYPE_ADMIN_CALL_REFUSED:
			refusedCalls[ev.GetActor()] += max(uint64(ev.GetAdminCallRefused().GetCount()), 1)
		}
		return nil
	})
	for _, t := range sortedKeys(byType) {
		st.ByType = append(st.ByType, Count{TypeName(t), byType[t]})
	}
	for _, c := range sortedKeys(byCause) {
		st.ByCause = append(st.ByCause, Count{CauseName(c), byCause[c]})
	}
	st.KickedUsers, st.KicksByActor, st.BansByActor = ranked(kicked), ranked(kicks), ranked(bans)
	if len(revokes) > 0 {
		st.RevokesByActor = ranked(revokes)
	}
	if len(refusedCalls) > 0 {
		st.RefusedAdminCalls = ranked(refusedCalls)
	}
	return st, err
}

func sortedKeys[K ~int32, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// ranked orders a tally most first, then by key.
func ranked(m map[string]uint64) []Count {
	out := make([]Count, 0, len(m))
	for k, v := range m {
		out = append(out, Count{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Key < out[j].Key
	})
	return out
}
