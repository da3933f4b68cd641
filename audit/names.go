package audit

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// TypeName is the short name of an event type as auditq shows and accepts
// it: "session_connected" for EVENT_TYPE_SESSION_CONNECTED. A type this
// version does not know is shown by number ("type_42").
func TypeName(t eventpb.EventType) string {
	full, ok := eventpb.EventType_name[int32(t)]
	if !ok {
		return "type_" + strconv.Itoa(int(t))
	}
	return enumName(full, "EVENT_TYPE_")
}

// TypeNames lists the short names of every known event type, in enum order.
func TypeNames() []string {
	var nums []int
	for n := range eventpb.EventType_name {
		if n != 0 {
			nums = append(nums, int(n))
		}
	}
	sort.Ints(nums)
	out := make([]string, len(nums))
	for i, n := range nums {
		out[i] = TypeName(eventpb.EventType(n))
	}
	return out
}

// ParseType accepts a short name ("kick_requested"), the enum name
// ("EVENT_TYPE_KICK_REQUESTED"), in any case. An unknown name is ErrInvalid
// with the valid names listed.
func ParseType(s string) (eventpb.EventType, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(u, "EVENT_TYPE_") {
		u = "EVENT_TYPE_" + u
	}
	if v, ok := eventpb.EventType_value[u]; ok && v != 0 {
		return eventpb.EventType(v), nil
	}
	return 0, invalid("unknown event type %q (valid: %s)", s, strings.Join(TypeNames(), ", "))
}

// CauseName is the short name of a disconnect cause ("kicked").
func CauseName(c eventpb.DisconnectCause) string {
	full, ok := eventpb.DisconnectCause_name[int32(c)]
	if !ok {
		return "cause_" + strconv.Itoa(int(c))
	}
	return enumName(full, "DISCONNECT_CAUSE_")
}

// lowerNames caches enumName's answers: export names an enum or two per
// record, and lowering the same few strings again and again showed in its
// profile. Keys are the enum's full name (prefixes differ between enums).
var lowerNames sync.Map

// enumText names v of an enum from its generated name map (a map lookup;
// the enum's String method goes through protobuf reflection, which showed
// in export's profile). A value this version does not know is its number.
func enumText(names map[int32]string, v int32, prefix string) string {
	full, ok := names[v]
	if !ok {
		return strconv.Itoa(int(v))
	}
	return enumName(full, prefix)
}

// enumName is an enum value's name without its prefix, in lower case.
func enumName(full, prefix string) string {
	if v, ok := lowerNames.Load(full); ok {
		return v.(string)
	}
	v := strings.ToLower(strings.TrimPrefix(full, prefix))
	lowerNames.Store(full, v)
	return v
}

// ReconnectText says the reconnect advice in words: "allowed", "not
// allowed", "after 5m0s".
func ReconnectText(r eventpb.Reconnect, afterMS int64) string {
	switch r {
	case eventpb.Reconnect_RECONNECT_ALLOWED:
		return "allowed"
	case eventpb.Reconnect_RECONNECT_NOT_ALLOWED:
		return "not allowed"
	case eventpb.Reconnect_RECONNECT_AFTER:
		return "after " + (time.Duration(afterMS) * time.Millisecond).String()
	case eventpb.Reconnect_RECONNECT_UNSPECIFIED:
		return ""
	default:
		return enumName(r.String(), "RECONNECT_")
	}
}

// Field is one type-specific detail of an event, in a fixed order. Value is
// a string, an int64, a uint64 or a []string.
type Field struct {
	Key   string
	Value any
}

// Details returns the body fields of ev that are set, in schema order, with
// enums by short name, ids as ULID text, payloads as JSON (a
// json.RawMessage under "payload") or base64 ("payload_base64") and times in
// RFC3339 in loc (nil: UTC). auditq prints them as key=value in tables and
// as the "details" object in JSON.
func Details(ev *eventpb.Event, loc *time.Location) []Field {
	var l fieldList
	visitDetails(ev, &l, loc)
	return l
}

// detailSink receives an event's details from visitDetails, so that export
// can write them as JSON without building a []Field per record.
type detailSink interface {
	str(k, v string)
	raw(k string, v json.RawMessage)
	num(k string, v int64)
	unum(k string, v uint64)
	list(k string, v []string)
}

type fieldList []Field

func (l *fieldList) str(k, v string)                 { *l = append(*l, Field{k, v}) }
func (l *fieldList) raw(k string, v json.RawMessage) { *l = append(*l, Field{k, v}) }
func (l *fieldList) num(k string, v int64)           { *l = append(*l, Field{k, v}) }
func (l *fieldList) unum(k string, v uint64)         { *l = append(*l, Field{k, v}) }
func (l *fieldList) list(k string, v []string)       { *l = append(*l, Field{k, v}) }

// visitDetails hands the set body fields of ev to s, in schema order,
// times in loc (nil: UTC).
func visitDetails(ev *eventpb.Event, s detailSink, loc *time.Location) {
	str := func(k, v string) {
		if v != "" {
			s.str(k, v)
		}
	}
	num := func(k string, v int64) {
		if v != 0 {
			s.num(k, v)
		}
	}
	list := func(k string, v []string) {
		if len(v) > 0 {
			s.list(k, v)
		}
	}
	at := func(k string, n int64) {
		if n != 0 {
			str(k, time.Unix(0, n).In(orUTC(loc)).Format(time.RFC3339Nano))
		}
	}
	token := func(t *eventpb.ClientToken) {
		str("token_id", t.GetId())
		at("token_issued", t.GetIssuedUnixNano())
		at("token_expires", t.GetExpiresUnixNano())
	}
	switch b := ev.GetBody().(type) {
	case *eventpb.Event_SessionConnected:
		c := b.SessionConnected
		str("remote_addr", c.GetRemoteAddr())
		num("heartbeat_ms", c.GetHeartbeatMs())
		list("supersedes", c.GetSupersedes())
		str("transport", c.GetTransport())
		token(c.GetToken())
		str("policy", PolicyText(c.GetPolicy()))
	case *eventpb.Event_SessionReconnected:
		c := b.SessionReconnected
		str("previous_session", c.GetPreviousSession())
		if c.GetLastAckedSeq() != 0 {
			s.unum("last_acked_seq", c.GetLastAckedSeq())
		}
		str("remote_addr", c.GetRemoteAddr())
		num("heartbeat_ms", c.GetHeartbeatMs())
		list("supersedes", c.GetSupersedes())
		str("transport", c.GetTransport())
		token(c.GetToken())
		str("policy", PolicyText(c.GetPolicy()))
	case *eventpb.Event_NotificationSent:
		n := b.NotificationSent
		if n.GetTarget() != 0 {
			str("target", enumText(eventpb.NotificationTarget_name, int32(n.GetTarget()), "NOTIFICATION_TARGET_"))
		}
		str("topic", n.GetTopic())
		// One rendering everywhere (hubapi): JSON as the value, anything
		// else as base64.
		if p := n.GetPayload(); len(p) > 0 {
			if c, ok := hubapi.PayloadJSON(p); ok {
				s.raw("payload", c)
			} else {
				str("payload_base64", base64.StdEncoding.EncodeToString(p))
			}
		}
	case *eventpb.Event_KickRequested:
		k := b.KickRequested
		if k.GetTarget() != 0 {
			str("target", enumText(eventpb.KickTarget_name, int32(k.GetTarget()), "KICK_TARGET_"))
		}
		if k.GetMode() != 0 {
			str("mode", enumText(eventpb.KickMode_name, int32(k.GetMode()), "KICK_MODE_"))
		}
		if k.GetReconnect() != 0 {
			str("reconnect", enumText(eventpb.Reconnect_name, int32(k.GetReconnect()), "RECONNECT_"))
		}
		num("reconnect_after_ms", k.GetReconnectAfterMs())
		num("refuse_connects_ms", k.GetRefuseConnectsMs())
		str("except_session", k.GetExceptSession())
		str("except_device", k.GetExceptDevice())
	case *eventpb.Event_UserBanned:
		if u := b.UserBanned.GetUntilUnixNano(); u != 0 {
			str("until", time.Unix(0, u).In(orUTC(loc)).Format(time.RFC3339Nano))
		}
	case *eventpb.Event_SessionDisconnected:
		d := b.SessionDisconnected
		if d.GetCause() != 0 {
			str("cause", CauseName(d.GetCause()))
		}
		str("cause_event_id", idText(d.GetCauseEventId()))
		str("superseded_by", d.GetSupersededBy())
		if d.GetReconnect() != 0 {
			str("reconnect", enumText(eventpb.Reconnect_name, int32(d.GetReconnect()), "RECONNECT_"))
		}
		num("reconnect_after_ms", d.GetReconnectAfterMs())
	case *eventpb.Event_NodeDrained:
		str("node", b.NodeDrained.GetNode())
		num("window_ms", b.NodeDrained.GetWindowMs())
	case *eventpb.Event_ConnectRejected:
		c := b.ConnectRejected
		str("code", c.GetCode())
		num("count", int64(c.GetCount()))
		str("remote_addr", c.GetRemoteAddr())
		str("cause_event_id", idText(c.GetCauseEventId()))
	case *eventpb.Event_TokenRevoked:
		v := b.TokenRevoked
		str("token_id", v.GetTokenId())
		at("issued_before", v.GetIssuedBeforeUnixNano())
		at("until", v.GetUntilUnixNano())
	case *eventpb.Event_AdminCallRefused:
		a := b.AdminCallRefused
		str("method", a.GetMethod())
		str("role", a.GetRole())
		str("needs", a.GetNeeds())
		num("count", int64(a.GetCount()))
		str("remote_addr", a.GetRemoteAddr())
	case *eventpb.Event_SessionTokenRefreshed:
		token(b.SessionTokenRefreshed.GetToken())
	case *eventpb.Event_TokenRefreshRefused:
		r := b.TokenRefreshRefused
		str("code", r.GetCode())
		token(r.GetToken())
		str("token_user", r.GetTokenUser())
		str("token_device", r.GetTokenDevice())
	}
}

// PolicyText shows a connect's login policy: "one_per_device",
// "max_per_user=2", both joined by a comma, "none" for a policy that
// limits nothing, and "" for no policy (a connect that recorded its
// supersedes itself).
func PolicyText(p *eventpb.LoginPolicy) string {
	if p == nil {
		return ""
	}
	var parts []string
	if p.GetOnePerDevice() {
		parts = append(parts, "one_per_device")
	}
	if n := p.GetMaxPerUser(); n > 0 {
		parts = append(parts, "max_per_user="+strconv.FormatUint(uint64(n), 10))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// orUTC is loc, or UTC for nil.
func orUTC(loc *time.Location) *time.Location {
	if loc == nil {
		return time.UTC
	}
	return loc
}

// idText shows a 16-byte id as a ULID and anything else as hex.
func idText(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) == len(ulid.ULID{}) {
		var id ulid.ULID
		copy(id[:], b)
		return id.String()
	}
	return hex.EncodeToString(b)
}

// FieldText formats a detail value for a table cell.
func FieldText(v any) string {
	switch v := v.(type) {
	case []string:
		return strings.Join(v, ",")
	case json.RawMessage:
		return string(v)
	default:
		return fmt.Sprint(v)
	}
}
