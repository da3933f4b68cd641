package projections

import (
	"container/heap"
	"fmt"
	"sort"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections/projpb"
)

// SnapshotVersion is the snapshot format version. A stored snapshot of any
// other version is ignored and the state is rebuilt from the log: bump it
// whenever the reducer's meaning or the snapshot's layout changes.
//
// 2: a connect during a ban is marked banned; a ban already expired when
// recorded, or ending no later than the ban in force, changes nothing; two
// new counters.
const SnapshotVersion = 2

// MarshalBinary encodes the state as a snapshot. The encoding is
// deterministic: equal states give equal bytes.
func (s *State) MarshalBinary() ([]byte, error) {
	pb := &projpb.Snapshot{
		Version:      SnapshotVersion,
		Seq:          s.seq,
		TimeUnixNano: unixNano(s.time),
		Counters: &projpb.Counters{
			Applied: s.counters.Applied, UnknownTypes: s.counters.UnknownTypes, NotEvents: s.counters.NotEvents,
			UnknownSessions: s.counters.UnknownSessions, DuplicateTerminals: s.counters.DuplicateTerminals,
			DuplicateConnects: s.counters.DuplicateConnects, UnbanNotBanned: s.counters.UnbanNotBanned,
			KicksMissed: s.counters.KicksMissed, BansExpired: s.counters.BansExpired, Malformed: s.counters.Malformed,
			BansExpiredOnArrival: s.counters.BansExpiredOnArrival, BansNotExtending: s.counters.BansNotExtending,
		},
	}
	sessions := make([]*Session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	sort.Slice(sessions, func(i, j int) bool {
		return sessions[i].ConnectSeq < sessions[j].ConnectSeq || (sessions[i].ConnectSeq == sessions[j].ConnectSeq && sessions[i].ID < sessions[j].ID)
	})
	for _, x := range sessions {
		pb.Sessions = append(pb.Sessions, &projpb.Session{
			Id: x.ID, User: x.User, Device: x.Device, Node: x.Node, RemoteAddr: x.RemoteAddr,
			ConnectedUnixNano: unixNano(x.ConnectedAt), ConnectSeq: x.ConnectSeq, ConnectId: idBytes(x.ConnectID),
			Previous: x.Previous, HeartbeatMs: x.HeartbeatMS,
		})
	}
	for _, p := range s.PendingEnds() {
		pb.Pending = append(pb.Pending, &projpb.Pending{
			Session: p.Session, User: p.User, Node: p.Node, Cause: int32(p.Cause), EventId: idBytes(p.EventID),
			Seq: p.Seq, AtUnixNano: unixNano(p.At), Actor: p.Actor, Reason: p.Reason, Mode: int32(p.Mode),
			Reconnect: int32(p.Reconnect), ReconnectAfterNs: int64(p.ReconnectAfter), SupersededBy: p.SupersededBy,
		})
	}
	bans := make([]*Ban, 0, len(s.bans))
	for _, b := range s.bans {
		bans = append(bans, b)
	}
	sort.Slice(bans, func(i, j int) bool { return bans[i].User < bans[j].User })
	for _, b := range bans {
		pb.Bans = append(pb.Bans, &projpb.Ban{
			User: b.User, Reason: b.Reason, Actor: b.Actor, SinceUnixNano: unixNano(b.Since),
			UntilUnixNano: unixNano(b.Until), EventId: idBytes(b.EventID), Seq: b.Seq,
		})
	}
	// The ring, oldest first.
	if len(s.recentIDs) < recentEnded {
		pb.RecentEnded = append(pb.RecentEnded, s.recentIDs...)
	} else {
		pb.RecentEnded = append(pb.RecentEnded, s.recentIDs[s.recentAt:]...)
		pb.RecentEnded = append(pb.RecentEnded, s.recentIDs[:s.recentAt]...)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(pb)
}

// UnmarshalState decodes a snapshot written by MarshalBinary.
func UnmarshalState(b []byte) (*State, error) {
	var pb projpb.Snapshot
	if err := proto.Unmarshal(b, &pb); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	if pb.GetVersion() != SnapshotVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrBadSnapshot, pb.GetVersion(), SnapshotVersion)
	}
	s := New()
	s.seq = pb.GetSeq()
	s.time = fromUnixNano(pb.GetTimeUnixNano())
	c := pb.GetCounters()
	s.counters = Counters{
		Applied: c.GetApplied(), UnknownTypes: c.GetUnknownTypes(), NotEvents: c.GetNotEvents(),
		UnknownSessions: c.GetUnknownSessions(), DuplicateTerminals: c.GetDuplicateTerminals(),
		DuplicateConnects: c.GetDuplicateConnects(), UnbanNotBanned: c.GetUnbanNotBanned(),
		KicksMissed: c.GetKicksMissed(), BansExpired: c.GetBansExpired(), Malformed: c.GetMalformed(),
		BansExpiredOnArrival: c.GetBansExpiredOnArrival(), BansNotExtending: c.GetBansNotExtending(),
	}
	for _, x := range pb.GetSessions() {
		if x.GetId() == "" || x.GetUser() == "" {
			return nil, fmt.Errorf("%w: session without id or user", ErrBadSnapshot)
		}
		sess := &Session{
			ID: x.GetId(), User: x.GetUser(), Device: x.GetDevice(), Node: x.GetNode(), RemoteAddr: x.GetRemoteAddr(),
			ConnectedAt: fromUnixNano(x.GetConnectedUnixNano()), ConnectSeq: x.GetConnectSeq(), ConnectID: toID(x.GetConnectId()),
			Previous: x.GetPrevious(), HeartbeatMS: x.GetHeartbeatMs(),
		}
		s.sessions[sess.ID] = sess
		s.byUser[sess.User] = append(s.byUser[sess.User], sess.ID)
	}
	for _, p := range pb.GetPending() {
		if _, ok := s.sessions[p.GetSession()]; !ok {
			return nil, fmt.Errorf("%w: pending end of a session that is not live", ErrBadSnapshot)
		}
		s.pending[p.GetSession()] = &PendingEnd{
			Session: p.GetSession(), User: p.GetUser(), Node: p.GetNode(), Cause: eventpb.DisconnectCause(p.GetCause()),
			EventID: toID(p.GetEventId()), Seq: p.GetSeq(), At: fromUnixNano(p.GetAtUnixNano()), Actor: p.GetActor(),
			Reason: p.GetReason(), Mode: eventpb.KickMode(p.GetMode()), Reconnect: eventpb.Reconnect(p.GetReconnect()),
			ReconnectAfter: time.Duration(p.GetReconnectAfterNs()), SupersededBy: p.GetSupersededBy(),
		}
	}
	for _, x := range pb.GetBans() {
		b := &Ban{
			User: x.GetUser(), Reason: x.GetReason(), Actor: x.GetActor(), Since: fromUnixNano(x.GetSinceUnixNano()),
			Until: fromUnixNano(x.GetUntilUnixNano()), EventID: toID(x.GetEventId()), Seq: x.GetSeq(),
		}
		s.bans[b.User] = b
		if !b.Until.IsZero() {
			heap.Push(&s.expiry, b)
		}
	}
	for _, id := range pb.GetRecentEnded() {
		s.remember(id)
	}
	return s, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func idBytes(id ulid.ULID) []byte {
	if id == (ulid.ULID{}) {
		return nil
	}
	return id[:]
}

func toID(b []byte) ulid.ULID {
	var id ulid.ULID
	copy(id[:], b)
	return id
}
