package audit

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/internal/protowalk"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// eventSlot is a reusable decode target for export: an Event and one of
// every body, so that decoding a record in the canonical encoding allocates
// only the strings no earlier record had (see interner). The Event it
// returns is valid until the next decode, and its byte fields (payload,
// cause_event_id) alias the input: export formats each record before it
// decodes the next, inside the read transaction that owns the bytes.
type eventSlot struct {
	ev eventpb.Event

	connected    eventpb.SessionConnected
	reconnected  eventpb.SessionReconnected
	notification eventpb.NotificationSent
	kick         eventpb.KickRequested
	banned       eventpb.UserBanned
	unbanned     eventpb.UserUnbanned
	disconnected eventpb.SessionDisconnected
	rejected     eventpb.ConnectRejected

	wConnected    eventpb.Event_SessionConnected
	wReconnected  eventpb.Event_SessionReconnected
	wNotification eventpb.Event_NotificationSent
	wKick         eventpb.Event_KickRequested
	wBanned       eventpb.Event_UserBanned
	wUnbanned     eventpb.Event_UserUnbanned
	wDisconnected eventpb.Event_SessionDisconnected
	wRejected     eventpb.Event_ConnectRejected

	strs interner
}

func newEventSlot() *eventSlot {
	sl := &eventSlot{strs: make(interner)}
	sl.wConnected.SessionConnected = &sl.connected
	sl.wReconnected.SessionReconnected = &sl.reconnected
	sl.wNotification.NotificationSent = &sl.notification
	sl.wKick.KickRequested = &sl.kick
	sl.wBanned.UserBanned = &sl.banned
	sl.wUnbanned.UserUnbanned = &sl.unbanned
	sl.wDisconnected.SessionDisconnected = &sl.disconnected
	sl.wRejected.ConnectRejected = &sl.rejected
	return sl
}

// decode decodes b, an encoded eventpb.Event. Anything but the canonical
// encoding the ledger writes (fields in number order, each at most once but
// for repeated ones, known fields and wire types, at most one body, valid
// UTF-8) goes through proto.Unmarshal into a fresh Event, so the result is
// always what a full decode gives, and so is the error for bad input.
func (sl *eventSlot) decode(b []byte) (*eventpb.Event, error) {
	if sl.decodeFast(b) {
		return &sl.ev, nil
	}
	ev := new(eventpb.Event)
	if err := proto.Unmarshal(b, ev); err != nil {
		return nil, err
	}
	return ev, nil
}

func (sl *eventSlot) decodeFast(b []byte) bool {
	ev := &sl.ev
	*ev = eventpb.Event{}
	var last protowire.Number
	for len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 || num <= last {
			return false
		}
		last = num
		b = b[n:]
		switch {
		case num == 1 && wt == protowire.VarintType:
			x, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return false
			}
			ev.Type = eventpb.EventType(int32(x))
			b = b[m:]
		case num >= 2 && num <= 7 && wt == protowire.BytesType:
			x, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return false
			}
			if !utf8.Valid(x) {
				return false
			}
			switch num {
			case 2:
				ev.User = string(x) // users and sessions are too many to share
			case 3:
				ev.Device = sl.strs.str(x)
			case 4:
				ev.Session = string(x)
			case 5:
				ev.Node = sl.strs.str(x)
			case 6:
				ev.Actor = sl.strs.str(x)
			case 7:
				ev.Reason = sl.strs.str(x)
			}
			b = b[m:]
		case num >= 20 && num <= 27 && wt == protowire.BytesType:
			if ev.Body != nil {
				return false
			}
			x, m := protowire.ConsumeBytes(b)
			if m < 0 || !sl.body(num, x) {
				return false
			}
			b = b[m:]
		default:
			return false
		}
	}
	return true
}

// body decodes the body message of field num into its slot and sets it.
func (sl *eventSlot) body(num protowire.Number, b []byte) bool {
	ev := &sl.ev
	switch num {
	case 20:
		c := &sl.connected
		*c = eventpb.SessionConnected{Supersedes: c.Supersedes[:0]}
		ok := protowalk.Walk(b, func(num protowire.Number, wt protowire.Type, v uint64, x []byte) bool {
			switch {
			case num == 1 && wt == protowire.BytesType:
				if !sl.set(&c.RemoteAddr, x) {
					return false
				}
			case num == 2 && wt == protowire.VarintType:
				c.HeartbeatMs = int64(v)
			case num == 3 && wt == protowire.BytesType:
				if !utf8.Valid(x) {
					return false
				}
				c.Supersedes = append(c.Supersedes, string(x))
			case num == 4 && wt == protowire.BytesType:
				if !sl.set(&c.Transport, x) {
					return false
				}
			default:
				return false
			}
			return true
		}, 3)
		if len(c.Supersedes) == 0 {
			c.Supersedes = nil
		}
		ev.Body = &sl.wConnected
		return ok
	case 21:
		c := &sl.reconnected
		*c = eventpb.SessionReconnected{Supersedes: c.Supersedes[:0]}
		ok := protowalk.Walk(b, func(num protowire.Number, wt protowire.Type, v uint64, x []byte) bool {
			switch {
			case num == 1 && wt == protowire.BytesType:
				if !setStr(&c.PreviousSession, x) {
					return false
				}
			case num == 2 && wt == protowire.VarintType:
				c.LastAckedSeq = v
			case num == 3 && wt == protowire.BytesType:
				if !sl.set(&c.RemoteAddr, x) {
					return false
				}
			case num == 4 && wt == protowire.VarintType:
				c.HeartbeatMs = int64(v)
			case num == 5 && wt == protowire.BytesType:
				if !utf8.Valid(x) {
					return false
				}
				c.Supersedes = append(c.Supersedes, string(x))
			case num == 6 && wt == protowire.BytesType:
				if !sl.set(&c.Transport, x) {
					return false
				}
			default:
				return false
			}
			return true
		}, 5)
		if len(c.Supersedes) == 0 {
			c.Supersedes = nil
		}
		ev.Body = &sl.wReconnected
		return ok
	case 22:
		n := &sl.notification
		*n = eventpb.NotificationSent{}
		ev.Body = &sl.wNotification
		return protowalk.Walk(b, func(num protowire.Number, wt protowire.Type, v uint64, x []byte) bool {
			switch {
			case num == 1 && wt == protowire.VarintType:
				n.Target = eventpb.NotificationTarget(int32(v))
			case num == 2 && wt == protowire.BytesType:
				if !sl.set(&n.Topic, x) {
					return false
				}
			case num == 3 && wt == protowire.BytesType:
				n.Payload = x
			default:
				return false
			}
			return true
		}, 0)
	case 23:
		k := &sl.kick
		*k = eventpb.KickRequested{}
		ev.Body = &sl.wKick
		return protowalk.Walk(b, func(num protowire.Number, wt protowire.Type, v uint64, _ []byte) bool {
			if wt != protowire.VarintType {
				return false
			}
			switch num {
			case 1:
				k.Target = eventpb.KickTarget(int32(v))
			case 2:
				k.Mode = eventpb.KickMode(int32(v))
			case 3:
				k.Reconnect = eventpb.Reconnect(int32(v))
			case 4:
				k.ReconnectAfterMs = int64(v)
			default:
				return false
			}
			return true
		}, 0)
	case 24:
		u := &sl.banned
		*u = eventpb.UserBanned{}
		ev.Body = &sl.wBanned
		return protowalk.Walk(b, func(num protowire.Number, wt protowire.Type, v uint64, _ []byte) bool {
			if num != 1 || wt != protowire.VarintType {
				return false
			}
			u.UntilUnixNano = int64(v)
			return true
		}, 0)
	case 25:
		sl.unbanned = eventpb.UserUnbanned{}
		ev.Body = &sl.wUnbanned
		return len(b) == 0
	case 26:
		d := &sl.disconnected
		*d = eventpb.SessionDisconnected{}
		ev.Body = &sl.wDisconnected
		return protowalk.Walk(b, func(num protowire.Number, wt protowire.Type, v uint64, x []byte) bool {
			switch {
			case num == 1 && wt == protowire.VarintType:
				d.Cause = eventpb.DisconnectCause(int32(v))
			case num == 2 && wt == protowire.BytesType:
				d.CauseEventId = x
			case num == 3 && wt == protowire.BytesType:
				if !setStr(&d.SupersededBy, x) {
					return false
				}
			case num == 4 && wt == protowire.VarintType:
				d.Reconnect = eventpb.Reconnect(int32(v))
			case num == 5 && wt == protowire.VarintType:
				d.ReconnectAfterMs = int64(v)
			default:
				return false
			}
			return true
		}, 0)
	case 27:
		c := &sl.rejected
		*c = eventpb.ConnectRejected{}
		ev.Body = &sl.wRejected
		return protowalk.Walk(b, func(num protowire.Number, wt protowire.Type, v uint64, x []byte) bool {
			switch {
			case num == 1 && wt == protowire.BytesType:
				if !sl.set(&c.Code, x) {
					return false
				}
			case num == 2 && wt == protowire.VarintType:
				c.Count = uint32(v)
			case num == 3 && wt == protowire.BytesType:
				if !sl.set(&c.RemoteAddr, x) {
					return false
				}
			default:
				return false
			}
			return true
		}, 0)
	}
	return false
}

// set sets *dst to b, shared with earlier records through the interner,
// and reports whether b is valid UTF-8 (proto3 strings must be; the
// fallback decoder gives the error).
func (sl *eventSlot) set(dst *string, b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	*dst = sl.strs.str(b)
	return true
}

// setStr is set for session ids, which are too many to share.
func setStr(dst *string, b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	*dst = string(b)
	return true
}

// interner shares one string among the records that carry the same device,
// node, actor, reason or address: few distinct values, repeated in millions
// of records. It keeps at most internMax strings of at most internLen
// bytes, so memory stays flat however long the export.
type interner map[string]string

const (
	internMax = 4096
	internLen = 64
)

func (in interner) str(b []byte) string {
	if s, ok := in[string(b)]; ok { // no allocation for the lookup
		return s
	}
	s := string(b)
	if len(b) <= internLen && len(in) < internMax {
		in[s] = s
	}
	return s
}
