package projections

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/internal/protowalk"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// eventSlot is a reusable decode target for one event: the Event and every
// body the reducer reads, preallocated so that decoding a record allocates
// only the strings the reducer may keep. Apply never keeps a pointer to the
// Event or its body, so a slot is reused as soon as its record is applied.
type eventSlot struct {
	ev eventpb.Event

	connected    eventpb.SessionConnected
	reconnected  eventpb.SessionReconnected
	disconnected eventpb.SessionDisconnected
	kick         eventpb.KickRequested
	banned       eventpb.UserBanned
	unbanned     eventpb.UserUnbanned

	wConnected    eventpb.Event_SessionConnected
	wReconnected  eventpb.Event_SessionReconnected
	wDisconnected eventpb.Event_SessionDisconnected
	wKick         eventpb.Event_KickRequested
	wBanned       eventpb.Event_UserBanned
	wUnbanned     eventpb.Event_UserUnbanned

	causeID [16]byte
}

// decode decodes b, an encoded eventpb.Event, into the fields Apply reads
// and returns the event. Types the reducer ignores (notifications, rejected
// connects, types it does not know) keep only their type. Anything but the
// canonical encoding the ledger writes (fields in order and at most once,
// known wire types, one body) goes through proto.Unmarshal into a fresh
// Event, so the reducer sees exactly what a full decode gives; so does
// invalid input, which gets proto.Unmarshal's error.
func (sl *eventSlot) decode(b []byte, in interner) (*eventpb.Event, error) {
	if ev, ok := sl.decodeFast(b, in); ok {
		return ev, nil
	}
	ev := new(eventpb.Event)
	if err := proto.Unmarshal(b, ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// interner shares one string among the records that carry the same
// device, node, actor or reason: few distinct values, repeated in millions
// of records. It saves an allocation per field while decoding, and the
// sessions and bans in the state share the copy. It keeps at most
// internMax strings of at most internLen bytes; a nil interner keeps none.
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
	if in != nil && len(b) <= internLen && len(in) < internMax {
		in[s] = s
	}
	return s
}

// reducerType reports whether Apply reads more than the type of an event
// of type t.
func reducerType(t eventpb.EventType) bool {
	switch t {
	case eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED,
		eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, eventpb.EventType_EVENT_TYPE_KICK_REQUESTED,
		eventpb.EventType_EVENT_TYPE_USER_BANNED, eventpb.EventType_EVENT_TYPE_USER_UNBANNED:
		return true
	}
	return false
}

func (sl *eventSlot) decodeFast(b []byte, in interner) (*eventpb.Event, bool) {
	// The type comes first in the canonical encoding; it decides what to
	// keep.
	var typ eventpb.EventType
	if len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n > 0 && num == 1 && wt == protowire.VarintType {
			x, m := protowire.ConsumeVarint(b[n:])
			if m < 0 {
				return nil, false
			}
			typ = eventpb.EventType(int32(x))
		}
	}
	keep := reducerType(typ)
	ev := &sl.ev
	*ev = eventpb.Event{Type: typ}
	var last protowire.Number
	body := false
	for len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 || num <= last {
			return nil, false
		}
		last = num
		b = b[n:]
		if num == 1 {
			if wt != protowire.VarintType {
				return nil, false
			}
			_, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return nil, false
			}
			b = b[m:]
			continue
		}
		if wt != protowire.BytesType || (num > 7 && (num < 20 || num > 27)) {
			return nil, false
		}
		x, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return nil, false
		}
		b = b[m:]
		if num <= 7 {
			if !utf8.Valid(x) {
				return nil, false
			}
			if !keep {
				continue
			}
			switch num {
			case 2:
				ev.User = string(x)
			case 3:
				ev.Device = in.str(x)
			case 4:
				ev.Session = string(x)
			case 5:
				ev.Node = in.str(x)
			case 6:
				ev.Actor = in.str(x)
			case 7:
				ev.Reason = in.str(x)
			}
			continue
		}
		if body {
			return nil, false // two bodies: let proto.Unmarshal pick
		}
		body = true
		if !sl.decodeBody(ev, num, x, keep) {
			return nil, false
		}
	}
	return ev, true
}

// decodeBody decodes the body in field num; with keep false it only checks
// it.
func (sl *eventSlot) decodeBody(ev *eventpb.Event, num protowire.Number, b []byte, keep bool) bool {
	switch num {
	case 20:
		c := &sl.connected
		*c = eventpb.SessionConnected{}
		ok := protowalk.Walk(b, func(f protowire.Number, wt protowire.Type, v uint64, s []byte) (ok bool) {
			ok = true
			switch {
			case f == 1 && wt == protowire.BytesType:
				c.RemoteAddr, ok = text(keep, s)
			case f == 2 && wt == protowire.VarintType:
				c.HeartbeatMs = int64(v)
			case f == 3 && wt == protowire.BytesType:
				var id string
				if id, ok = text(keep, s); keep {
					c.Supersedes = append(c.Supersedes, id)
				}
			case f == 4 && wt == protowire.BytesType:
				c.Transport, ok = transportText(keep, s)
			default:
				return false
			}
			return ok
		}, 3)
		sl.wConnected.SessionConnected = c
		ev.Body = &sl.wConnected
		return ok
	case 21:
		c := &sl.reconnected
		*c = eventpb.SessionReconnected{}
		ok := protowalk.Walk(b, func(f protowire.Number, wt protowire.Type, v uint64, s []byte) (ok bool) {
			ok = true
			switch {
			case f == 1 && wt == protowire.BytesType:
				c.PreviousSession, ok = text(keep, s)
			case f == 2 && wt == protowire.VarintType:
				c.LastAckedSeq = v
			case f == 3 && wt == protowire.BytesType:
				c.RemoteAddr, ok = text(keep, s)
			case f == 4 && wt == protowire.VarintType:
				c.HeartbeatMs = int64(v)
			case f == 5 && wt == protowire.BytesType:
				var id string
				if id, ok = text(keep, s); keep {
					c.Supersedes = append(c.Supersedes, id)
				}
			case f == 6 && wt == protowire.BytesType:
				c.Transport, ok = transportText(keep, s)
			default:
				return false
			}
			return ok
		}, 5)
		sl.wReconnected.SessionReconnected = c
		ev.Body = &sl.wReconnected
		return ok
	case 22: // NotificationSent: target, topic, payload
		return protowalk.Walk(b, func(f protowire.Number, wt protowire.Type, _ uint64, s []byte) bool {
			return (f == 1 && wt == protowire.VarintType) || (f == 2 && wt == protowire.BytesType && utf8.Valid(s)) ||
				(f == 3 && wt == protowire.BytesType)
		}, 0) && !keep
	case 23:
		k := &sl.kick
		*k = eventpb.KickRequested{}
		ok := protowalk.Walk(b, func(f protowire.Number, wt protowire.Type, v uint64, _ []byte) bool {
			if wt != protowire.VarintType {
				return false
			}
			switch f {
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
		sl.wKick.KickRequested = k
		ev.Body = &sl.wKick
		return ok
	case 24:
		u := &sl.banned
		*u = eventpb.UserBanned{}
		ok := protowalk.Walk(b, func(f protowire.Number, wt protowire.Type, v uint64, _ []byte) bool {
			if f != 1 || wt != protowire.VarintType {
				return false
			}
			u.UntilUnixNano = int64(v)
			return true
		}, 0)
		sl.wBanned.UserBanned = u
		ev.Body = &sl.wBanned
		return ok
	case 25:
		sl.unbanned = eventpb.UserUnbanned{}
		sl.wUnbanned.UserUnbanned = &sl.unbanned
		ev.Body = &sl.wUnbanned
		return len(b) == 0
	case 26:
		d := &sl.disconnected
		*d = eventpb.SessionDisconnected{}
		ok := protowalk.Walk(b, func(f protowire.Number, wt protowire.Type, v uint64, s []byte) (ok bool) {
			ok = true
			switch {
			case f == 1 && wt == protowire.VarintType:
				d.Cause = eventpb.DisconnectCause(int32(v))
			case f == 2 && wt == protowire.BytesType:
				// Apply copies at most 16 bytes out of it.
				n := copy(sl.causeID[:], s)
				d.CauseEventId = sl.causeID[:n:n]
				if len(s) > n {
					return false
				}
			case f == 3 && wt == protowire.BytesType:
				d.SupersededBy, ok = text(keep, s)
			case f == 4 && wt == protowire.VarintType:
				d.Reconnect = eventpb.Reconnect(int32(v))
			case f == 5 && wt == protowire.VarintType:
				d.ReconnectAfterMs = int64(v)
			default:
				return false
			}
			return ok
		}, 0)
		sl.wDisconnected.SessionDisconnected = d
		ev.Body = &sl.wDisconnected
		return ok
	case 27: // ConnectRejected: code, count, remote_addr
		return protowalk.Walk(b, func(f protowire.Number, wt protowire.Type, _ uint64, s []byte) bool {
			return (f == 1 && wt == protowire.BytesType && utf8.Valid(s)) || (f == 2 && wt == protowire.VarintType) ||
				(f == 3 && wt == protowire.BytesType && utf8.Valid(s))
		}, 0) && !keep
	}
	return false
}

// text returns s as a string if keep (a field the reducer reads) and
// reports whether it is valid UTF-8, as proto3 requires of strings.
func text(keep bool, s []byte) (string, bool) {
	if !utf8.Valid(s) {
		return "", false
	}
	if !keep {
		return "", true
	}
	return string(s), true
}

// transportName shares the known transport names' strings.
func transportName(s string) string {
	t, _ := transportText(false, []byte(s))
	if t == "" {
		return s
	}
	return t
}

// transportText is text for a connect event's transport: the names the hub
// records share one string each instead of a copy per session.
func transportText(keep bool, b []byte) (string, bool) {
	switch string(b) {
	case "grpc":
		return "grpc", true
	case "websocket+proto":
		return "websocket+proto", true
	case "websocket+json":
		return "websocket+json", true
	}
	return text(keep, b)
}
