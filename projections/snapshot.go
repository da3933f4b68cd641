package projections

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections/projpb"
)

// SnapshotVersion is the snapshot format version. A stored snapshot of any
// other version is ignored and the state is rebuilt from the log: bump it
// whenever the reducer's meaning or the snapshot's layout changes.
//
// 2: a connect during a ban is marked banned; a ban already expired when
// recorded, or ending no later than the ban in force, changes nothing; two
// new counters; stored snapshots carry the hash of the record at their seq.
//
// 3: sessions carry their client token (id, issued, expires); token
// revocations and kicks' refusals of fresh connects, with the ends they
// mark (cause revoked; a connect during a refusal ends as kicked); three
// new counters.
const SnapshotVersion = 3

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
			RevocationsLapsedOnArrival: s.counters.RevocationsLapsedOnArrival, RevocationsNotWidening: s.counters.RevocationsNotWidening,
			UnknownRefreshes: s.counters.UnknownRefreshes,
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
			Previous: x.Previous, HeartbeatMs: x.HeartbeatMS, Transport: x.Transport,
			TokenId: x.TokenID, TokenIssuedUnixNano: unixNano(x.TokenIssued), TokenExpiresUnixNano: unixNano(x.TokenExpires),
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
	revs := make([]Revocation, 0, len(s.revokedTokens)+len(s.revokedUsers))
	for _, v := range s.revokedTokens {
		revs = append(revs, *v)
	}
	for _, v := range s.revokedUsers {
		revs = append(revs, *v)
	}
	sortRevocations(revs)
	for _, v := range revs {
		pb.Revocations = append(pb.Revocations, &projpb.Revocation{
			TokenId: v.TokenID, User: v.User, IssuedBeforeUnixNano: unixNano(v.IssuedBefore), SinceUnixNano: unixNano(v.Since),
			UntilUnixNano: unixNano(v.Until), Reason: v.Reason, Actor: v.Actor, EventId: idBytes(v.EventID), Seq: v.Seq,
		})
	}
	refs := make([]Refusal, 0, len(s.refusedDevices)+len(s.refusedTokens))
	for _, f := range s.refusedDevices {
		refs = append(refs, *f)
	}
	for _, f := range s.refusedTokens {
		refs = append(refs, *f)
	}
	sortRefusals(refs)
	for _, f := range refs {
		pb.Refusals = append(pb.Refusals, &projpb.Refusal{
			User: f.User, Device: f.Device, TokenId: f.TokenID, SinceUnixNano: unixNano(f.Since), UntilUnixNano: unixNano(f.Until),
			Reason: f.Reason, Actor: f.Actor, Reconnect: int32(f.Reconnect), EventId: idBytes(f.EventID), Seq: f.Seq,
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

// UnmarshalState decodes a snapshot written by MarshalBinary (or stored by
// the Runner or WriteSnapshots). It returns ErrBadSnapshot for another
// format version and for a snapshot that does not decode or does not
// describe a state the reducer can reach (a session id twice, a session
// without a user, a pending end of a session that is not live, a ban twice
// or without a user). It does not compare the snapshot with a log: the
// Runner and StateAt also check the record hash a stored snapshot carries.
func UnmarshalState(b []byte) (*State, error) {
	st, _, err := decodeSnapshot(b)
	return st, err
}

// decodeSnapshot is UnmarshalState; it also returns the record hash the
// snapshot carries (nil without one).
func decodeSnapshot(b []byte) (*State, []byte, error) {
	// The version first: a stale snapshot is not worth decoding.
	if v, _, ok := snapshotHeader(b); !ok || v != SnapshotVersion {
		return nil, nil, fmt.Errorf("%w: version %d, want %d", ErrBadSnapshot, v, SnapshotVersion)
	}
	var pb projpb.Snapshot
	if err := proto.Unmarshal(b, &pb); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	if pb.GetVersion() != SnapshotVersion { // a later field 1 wins in protobuf
		return nil, nil, fmt.Errorf("%w: version %d, want %d", ErrBadSnapshot, pb.GetVersion(), SnapshotVersion)
	}
	st, err := stateFromPB(&pb)
	if err != nil {
		return nil, nil, err
	}
	return st, pb.GetRecordHash(), nil
}

func stateFromPB(pb *projpb.Snapshot) (*State, error) {
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
		RevocationsLapsedOnArrival: c.GetRevocationsLapsedOnArrival(), RevocationsNotWidening: c.GetRevocationsNotWidening(),
		UnknownRefreshes: c.GetUnknownRefreshes(),
	}
	for _, x := range pb.GetSessions() {
		if x.GetId() == "" || x.GetUser() == "" {
			return nil, fmt.Errorf("%w: session without id or user", ErrBadSnapshot)
		}
		if _, dup := s.sessions[x.GetId()]; dup {
			// Two would share one byUser entry and leave the other dangling.
			return nil, fmt.Errorf("%w: session %q twice", ErrBadSnapshot, x.GetId())
		}
		sess := &Session{
			ID: x.GetId(), User: x.GetUser(), Device: x.GetDevice(), Node: x.GetNode(), RemoteAddr: x.GetRemoteAddr(),
			ConnectedAt: fromUnixNano(x.GetConnectedUnixNano()), ConnectSeq: x.GetConnectSeq(), ConnectID: toID(x.GetConnectId()),
			Previous: x.GetPrevious(), HeartbeatMS: x.GetHeartbeatMs(), Transport: eventpb.KnownTransport(x.GetTransport()),
			TokenID: x.GetTokenId(), TokenIssued: fromUnixNano(x.GetTokenIssuedUnixNano()), TokenExpires: fromUnixNano(x.GetTokenExpiresUnixNano()),
		}
		s.sessions[sess.ID] = sess
		s.byUser[sess.User] = append(s.byUser[sess.User], sess.ID)
		s.onNode[sess.Node]++
		if sess.TokenID != "" {
			s.holders[sess.TokenID] = append(s.holders[sess.TokenID], sess)
		}
	}
	// MarshalBinary writes the sessions in connect order, the order a
	// revocation marks a token's holders in; a snapshot from elsewhere may
	// not have, and inserting one by one could cost the square of a token's
	// holders.
	for _, hs := range s.holders {
		slices.SortStableFunc(hs, func(a, b *Session) int { return cmp.Compare(a.ConnectSeq, b.ConnectSeq) })
	}
	for _, p := range pb.GetPending() {
		if _, ok := s.sessions[p.GetSession()]; !ok {
			return nil, fmt.Errorf("%w: pending end of a session that is not live", ErrBadSnapshot)
		}
		if _, dup := s.pending[p.GetSession()]; dup {
			return nil, fmt.Errorf("%w: two pending ends of session %q", ErrBadSnapshot, p.GetSession())
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
		if b.User == "" {
			return nil, fmt.Errorf("%w: ban without a user", ErrBadSnapshot)
		}
		if _, dup := s.bans[b.User]; dup {
			return nil, fmt.Errorf("%w: two bans of user %q", ErrBadSnapshot, b.User)
		}
		s.bans[b.User] = b
		s.expiry.push(b)
	}
	for _, x := range pb.GetRevocations() {
		v := &Revocation{
			TokenID: x.GetTokenId(), User: x.GetUser(), IssuedBefore: fromUnixNano(x.GetIssuedBeforeUnixNano()),
			Since: fromUnixNano(x.GetSinceUnixNano()), Until: fromUnixNano(x.GetUntilUnixNano()), Reason: x.GetReason(),
			Actor: x.GetActor(), EventID: toID(x.GetEventId()), Seq: x.GetSeq(),
		}
		m, key := s.revokedTokens, v.TokenID
		if key == "" {
			if v.User == "" || v.IssuedBefore.IsZero() {
				return nil, fmt.Errorf("%w: revocation without a token id, or without a user and a time", ErrBadSnapshot)
			}
			m, key = s.revokedUsers, v.User
		}
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("%w: two revocations of %q", ErrBadSnapshot, key)
		}
		m[key] = v
		s.lapses.push(lapse{rev: v})
	}
	for _, x := range pb.GetRefusals() {
		f := &Refusal{
			User: x.GetUser(), Device: x.GetDevice(), TokenID: x.GetTokenId(), Since: fromUnixNano(x.GetSinceUnixNano()),
			Until: fromUnixNano(x.GetUntilUnixNano()), Reason: x.GetReason(), Actor: x.GetActor(),
			Reconnect: eventpb.Reconnect(x.GetReconnect()), EventID: toID(x.GetEventId()), Seq: x.GetSeq(),
		}
		if f.User == "" || f.Until.IsZero() {
			return nil, fmt.Errorf("%w: refusal without a user or an end", ErrBadSnapshot)
		}
		if f.TokenID != "" {
			if _, dup := s.refusedTokens[f.TokenID]; dup {
				return nil, fmt.Errorf("%w: two refusals of token %q", ErrBadSnapshot, f.TokenID)
			}
			s.refusedTokens[f.TokenID] = f
		} else {
			k := deviceKey{f.User, f.Device}
			if _, dup := s.refusedDevices[k]; dup {
				return nil, fmt.Errorf("%w: two refusals of %q on %q", ErrBadSnapshot, f.User, f.Device)
			}
			s.refusedDevices[k] = f
		}
		s.lapses.push(lapse{ref: f})
	}
	for _, id := range pb.GetRecentEnded() {
		s.remember(id)
	}
	return s, nil
}

// snapshotHeader reads the version and seq of an encoded snapshot without
// decoding the rest: MarshalBinary writes them first.
func snapshotHeader(b []byte) (version uint32, seq uint64, ok bool) {
	var haveV, haveS bool
	for len(b) > 0 && !(haveV && haveS) {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, false
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == 1 || num == 2) {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, 0, false
			}
			b = b[n:]
			if num == 1 {
				version, haveV = uint32(v), true
			} else {
				seq, haveS = v, true
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0, 0, false
		}
		b = b[n:]
	}
	return version, seq, true
}

// withRecordHash returns b, a snapshot encoded by MarshalBinary, with the
// record hash h added (appended: the snapshot is not encoded again).
// Fields 10 and 11 (version 3) then come before it, which protobuf readers
// accept; the bytes are no longer those of a deterministic encoding of the
// whole, which nothing compares.
func withRecordHash(b []byte, h ledger.Hash) []byte {
	b = protowire.AppendTag(b, 9, protowire.BytesType)
	return protowire.AppendBytes(b, h[:])
}

// encodeStored encodes st as a snapshot to store in store: MarshalBinary
// plus the hash of the record at st.Seq(), read from the log.
func encodeStored(store *ledger.Store, st *State) ([]byte, error) {
	b, err := st.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return stampHash(store, st.Seq(), b)
}

// stampHash adds the hash of the log's record seq to b (MarshalBinary's
// encoding of a state at seq).
func stampHash(store *ledger.Store, seq uint64, b []byte) ([]byte, error) {
	if seq == 0 {
		return b, nil
	}
	rec, err := store.Get(seq)
	if err != nil {
		return nil, fmt.Errorf("record hash at seq %d: %w", seq, err)
	}
	return withRecordHash(b, rec.Hash), nil
}

// loadStored decodes a snapshot stored in store and checks it against the
// log: the record at its seq must exist and have the hash the snapshot
// carries. A snapshot of another log (a file restored from a backup and
// grown again, a replaced log) or one without a hash is ErrBadSnapshot.
func loadStored(store *ledger.Store, b []byte) (*State, error) {
	st, h, err := decodeSnapshot(b)
	if err != nil {
		return nil, err
	}
	if st.Seq() == 0 {
		return st, nil
	}
	if len(h) != len(ledger.Hash{}) {
		return nil, fmt.Errorf("%w: no record hash", ErrBadSnapshot)
	}
	rec, err := store.Get(st.Seq())
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, fmt.Errorf("%w: seq %d is ahead of the log", ErrBadSnapshot, st.Seq())
	}
	if err != nil {
		return nil, fmt.Errorf("check snapshot at seq %d against the log: %w", st.Seq(), err)
	}
	if !bytes.Equal(rec.Hash[:], h) {
		return nil, fmt.Errorf("%w: the record at seq %d has another hash (a snapshot of another log)", ErrBadSnapshot, st.Seq())
	}
	return st, nil
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
