package audit

import (
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/audit/auditpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// Conversions between the engine's Go values and the wire messages. Each
// pair is the inverse of the other, so a query answers the same through
// Client as through Engine (the tests compare both).

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func idBytes(id ulid.ULID) []byte {
	if id == (ulid.ULID{}) {
		return nil
	}
	return append([]byte(nil), id[:]...)
}

func toID(b []byte) ulid.ULID {
	var id ulid.ULID
	copy(id[:], b)
	return id
}

func filterToPB(f Filter) *auditpb.Filter {
	return &auditpb.Filter{
		User: f.User, Session: f.Session, Device: f.Device, Actor: f.Actor, Message: f.Message, Types: f.Types,
		SinceUnixNano: nanos(f.Since), UntilUnixNano: nanos(f.Until), Limit: f.Limit,
	}
}

func filterFromPB(p *auditpb.Filter) Filter {
	return Filter{
		User: p.GetUser(), Session: p.GetSession(), Device: p.GetDevice(), Actor: p.GetActor(), Message: p.GetMessage(), Types: p.GetTypes(),
		Since: fromNanos(p.GetSinceUnixNano()), Until: fromNanos(p.GetUntilUnixNano()), Limit: p.GetLimit(),
	}
}

func recordToPB(r *ledger.Record) *auditpb.AuditRecord {
	pb := &eventpb.Record{
		Seq: r.Seq, Id: idBytes(r.ID), TimeUnixNano: r.Time.UnixNano(), Topic: r.Topic,
		MessageUuid: r.UUID, Metadata: r.Metadata,
	}
	switch {
	case r.Event != nil:
		pb.Body = &eventpb.Record_Event{Event: r.Event}
	case r.Payload != nil:
		pb.Body = &eventpb.Record_Payload{Payload: r.Payload}
	}
	return &auditpb.AuditRecord{Record: pb, Hash: append([]byte(nil), r.Hash[:]...)}
}

func recordFromPB(p *auditpb.AuditRecord) *ledger.Record {
	pb := p.GetRecord()
	r := &ledger.Record{
		Seq: pb.GetSeq(), ID: toID(pb.GetId()), Time: time.Unix(0, pb.GetTimeUnixNano()).UTC(), Topic: pb.GetTopic(),
		UUID: pb.GetMessageUuid(), Metadata: pb.GetMetadata(), Event: pb.GetEvent(), Payload: pb.GetPayload(),
	}
	copy(r.Hash[:], p.GetHash())
	return r
}

func sessionToPB(s *projections.Session) *auditpb.Session {
	if s == nil {
		return nil
	}
	return &auditpb.Session{
		Id: s.ID, User: s.User, Device: s.Device, Node: s.Node, RemoteAddr: s.RemoteAddr,
		ConnectedUnixNano: nanos(s.ConnectedAt), ConnectSeq: s.ConnectSeq, ConnectId: idBytes(s.ConnectID),
		Previous: s.Previous, HeartbeatMs: s.HeartbeatMS, Transport: s.Transport,
	}
}

func sessionFromPB(p *auditpb.Session) projections.Session {
	return projections.Session{
		ID: p.GetId(), User: p.GetUser(), Device: p.GetDevice(), Node: p.GetNode(), RemoteAddr: p.GetRemoteAddr(),
		ConnectedAt: fromNanos(p.GetConnectedUnixNano()), ConnectSeq: p.GetConnectSeq(), ConnectID: toID(p.GetConnectId()),
		Previous: p.GetPrevious(), HeartbeatMS: p.GetHeartbeatMs(), Transport: p.GetTransport(),
	}
}

func pendingToPB(p *projections.PendingEnd) *auditpb.Pending {
	if p == nil {
		return nil
	}
	return &auditpb.Pending{
		Session: p.Session, User: p.User, Node: p.Node, Cause: p.Cause, EventId: idBytes(p.EventID), Seq: p.Seq,
		AtUnixNano: nanos(p.At), Actor: p.Actor, Reason: p.Reason, Mode: p.Mode, Reconnect: p.Reconnect,
		ReconnectAfterNs: int64(p.ReconnectAfter), SupersededBy: p.SupersededBy,
	}
}

func pendingFromPB(p *auditpb.Pending) projections.PendingEnd {
	return projections.PendingEnd{
		Session: p.GetSession(), User: p.GetUser(), Node: p.GetNode(), Cause: p.GetCause(), EventID: toID(p.GetEventId()),
		Seq: p.GetSeq(), At: fromNanos(p.GetAtUnixNano()), Actor: p.GetActor(), Reason: p.GetReason(), Mode: p.GetMode(),
		Reconnect: p.GetReconnect(), ReconnectAfter: time.Duration(p.GetReconnectAfterNs()), SupersededBy: p.GetSupersededBy(),
	}
}

func banToPB(b *projections.Ban) *auditpb.Ban {
	if b == nil {
		return nil
	}
	return &auditpb.Ban{
		User: b.User, Reason: b.Reason, Actor: b.Actor, SinceUnixNano: nanos(b.Since), UntilUnixNano: nanos(b.Until),
		EventId: idBytes(b.EventID), Seq: b.Seq,
	}
}

func banFromPB(p *auditpb.Ban) projections.Ban {
	return projections.Ban{
		User: p.GetUser(), Reason: p.GetReason(), Actor: p.GetActor(), Since: fromNanos(p.GetSinceUnixNano()),
		Until: fromNanos(p.GetUntilUnixNano()), EventID: toID(p.GetEventId()), Seq: p.GetSeq(),
	}
}

func revocationToPB(v *projections.Revocation) *auditpb.Revocation {
	return &auditpb.Revocation{
		TokenId: v.TokenID, User: v.User, IssuedBeforeUnixNano: nanos(v.IssuedBefore), SinceUnixNano: nanos(v.Since),
		UntilUnixNano: nanos(v.Until), Reason: v.Reason, Actor: v.Actor, EventId: idBytes(v.EventID), Seq: v.Seq,
	}
}

func revocationFromPB(p *auditpb.Revocation) projections.Revocation {
	return projections.Revocation{
		TokenID: p.GetTokenId(), User: p.GetUser(), IssuedBefore: fromNanos(p.GetIssuedBeforeUnixNano()), Since: fromNanos(p.GetSinceUnixNano()),
		Until: fromNanos(p.GetUntilUnixNano()), Reason: p.GetReason(), Actor: p.GetActor(), EventID: toID(p.GetEventId()), Seq: p.GetSeq(),
	}
}

func stepToPB(s Step) *auditpb.ReplayStep {
	ch := s.Change
	out := &auditpb.ReplayStep{
		Record: recordToPB(s.Record), Started: sessionToPB(ch.Started), Banned: banToPB(ch.Banned),
		Unbanned: banToPB(ch.Unbanned), Anomaly: ch.Anomaly, Live: uint64(s.Live), Bans: uint64(s.Bans),
	}
	if e := ch.Ended; e != nil {
		out.Ended = &auditpb.Ended{
			Session: sessionToPB(&e.Session), EndedUnixNano: nanos(e.EndedAt), EndSeq: e.EndSeq, Cause: e.Cause,
			CauseEventId: idBytes(e.CauseEventID), SupersededBy: e.SupersededBy, Reconnect: e.Reconnect, ReconnectMs: e.ReconnectMS,
		}
	}
	for i := range ch.Pending {
		out.Pending = append(out.Pending, pendingToPB(&ch.Pending[i]))
	}
	for i := range ch.Expired {
		out.Expired = append(out.Expired, banToPB(&ch.Expired[i]))
	}
	return out
}

func stepFromPB(p *auditpb.ReplayStep) Step {
	r := recordFromPB(p.GetRecord())
	ch := projections.Change{Seq: r.Seq, Type: r.Event.GetType(), Anomaly: p.GetAnomaly()}
	if p.Started != nil {
		s := sessionFromPB(p.Started)
		ch.Started = &s
	}
	if e := p.GetEnded(); e != nil {
		ch.Ended = &projections.Ended{
			Session: sessionFromPB(e.GetSession()), EndedAt: fromNanos(e.GetEndedUnixNano()), EndSeq: e.GetEndSeq(),
			Cause: e.GetCause(), CauseEventID: toID(e.GetCauseEventId()), SupersededBy: e.GetSupersededBy(),
			Reconnect: e.GetReconnect(), ReconnectMS: e.GetReconnectMs(),
		}
	}
	for _, x := range p.GetPending() {
		ch.Pending = append(ch.Pending, pendingFromPB(x))
	}
	if p.Banned != nil {
		b := banFromPB(p.Banned)
		ch.Banned = &b
	}
	if p.Unbanned != nil {
		b := banFromPB(p.Unbanned)
		ch.Unbanned = &b
	}
	for _, x := range p.GetExpired() {
		ch.Expired = append(ch.Expired, banFromPB(x))
	}
	return Step{Record: r, Change: ch, Live: int(p.GetLive()), Bans: int(p.GetBans())}
}

func countsToPB(cs []Count) []*auditpb.Count {
	out := make([]*auditpb.Count, len(cs))
	for i, c := range cs {
		out[i] = &auditpb.Count{Key: c.Key, Count: c.Count}
	}
	return out
}

func countsFromPB(cs []*auditpb.Count) []Count {
	var out []Count
	for _, c := range cs {
		out = append(out, Count{c.GetKey(), c.GetCount()})
	}
	return out
}

func statsToPB(s Stats) *auditpb.StatsResponse {
	return &auditpb.StatsResponse{
		Events: s.Events, FirstSeq: s.FirstSeq, LastSeq: s.LastSeq, FirstUnixNano: nanos(s.FirstTime), LastUnixNano: nanos(s.LastTime),
		ByType: countsToPB(s.ByType), ByCause: countsToPB(s.ByCause), KickedUsers: countsToPB(s.KickedUsers),
		KicksByActor: countsToPB(s.KicksByActor), BansByActor: countsToPB(s.BansByActor), RejectedAttempts: s.RejectedAttempts,
		RevokesByActor: countsToPB(s.RevokesByActor), RefusedAdminCalls: countsToPB(s.RefusedAdminCalls),
	}
}

func statsFromPB(p *auditpb.StatsResponse) Stats {
	return Stats{
		Events: p.GetEvents(), FirstSeq: p.GetFirstSeq(), LastSeq: p.GetLastSeq(),
		FirstTime: fromNanos(p.GetFirstUnixNano()), LastTime: fromNanos(p.GetLastUnixNano()),
		ByType: countsFromPB(p.GetByType()), ByCause: countsFromPB(p.GetByCause()), KickedUsers: countsFromPB(p.GetKickedUsers()),
		KicksByActor: countsFromPB(p.GetKicksByActor()), BansByActor: countsFromPB(p.GetBansByActor()), RejectedAttempts: p.GetRejectedAttempts(),
		RevokesByActor: countsFromPB(p.GetRevokesByActor()), RefusedAdminCalls: countsFromPB(p.GetRefusedAdminCalls()),
	}
}

func timelineToPB(e TimelineEntry) *auditpb.TimelineEntry {
	return &auditpb.TimelineEntry{
		Seq: e.Seq, Id: idBytes(e.ID), TimeUnixNano: nanos(e.Time), Type: e.Type, User: e.User,
		Session: e.Session, Actor: e.Actor, Text: e.Text,
	}
}

func timelineFromPB(p *auditpb.TimelineEntry) TimelineEntry {
	return TimelineEntry{
		Seq: p.GetSeq(), ID: toID(p.GetId()), Time: fromNanos(p.GetTimeUnixNano()), Type: p.GetType(), User: p.GetUser(),
		Session: p.GetSession(), Actor: p.GetActor(), Text: p.GetText(),
	}
}

func rangesToPB(rs []SeqRange) []*auditpb.SeqRange {
	var out []*auditpb.SeqRange
	for _, r := range rs {
		out = append(out, &auditpb.SeqRange{FromSeq: r.From, ToSeq: r.To})
	}
	return out
}

func rangesFromPB(rs []*auditpb.SeqRange) []SeqRange {
	var out []SeqRange
	for _, r := range rs {
		out = append(out, SeqRange{r.GetFromSeq(), r.GetToSeq()})
	}
	return out
}
