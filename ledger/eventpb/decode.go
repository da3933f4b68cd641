package eventpb

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// This file is hand-written: the one fast decoder of stored events, shared
// by projections (replay) and audit (export). It spells no field number:
// NewDecoder reads the numbers, wire types and nesting from the generated
// descriptor, matching the fields it knows by name (fieldSpecs), and the
// tests fail when the schema has a field it does not know.

// DecoderOptions say what a Decoder keeps of each event.
type DecoderOptions struct {
	// Only, if not empty, lists the event types decoded in full. An event
	// of any other type (known or not) is still read to its end, so bad
	// input is still an error, but Decode sets only its Type (unless it
	// fell back to proto.Unmarshal, which decodes everything): a caller
	// that reads nothing else of it pays for no strings.
	// Empty: every event is decoded in full.
	Only []EventType
	// Intern shares one string among the events that carry the same
	// device, node, actor, reason, topic, reject or refusal code, or admin
	// method and role: few values,
	// repeated in millions of records. It saves an allocation per field,
	// and whoever keeps the strings shares one copy. The Decoder keeps at
	// most 4096 strings of at most 64 bytes, so its memory stays flat
	// however long the log. Users, sessions and addresses are too many to
	// share and are never interned.
	Intern bool
	// AliasBytes lets the byte fields (a notification's payload, a
	// disconnect's or a rejected connect's cause_event_id) alias the input
	// instead of copying them
	// into the Slot: for a caller that is done with the event before the
	// input's memory changes (audit's export formats each record inside the
	// read transaction that owns its bytes). Strings never alias the input.
	AliasBytes bool
}

// Interner bounds (DecoderOptions.Intern).
const (
	internMax = 4096
	internLen = 64
)

// Decoder decodes encoded Events into reusable Slots. The canonical
// encoding, which is what the ledger writes (proto.Marshal: fields in number
// order, each once but for repeated ones, at most one body, known fields
// only, valid UTF-8), it reads itself with protowire, allocating only the
// strings it keeps; anything else goes to proto.Unmarshal, so an event it
// decodes in full always equals a full decode, and invalid input gets
// proto.Unmarshal's error.
//
// A Decoder is not safe for concurrent use (its interner): give each
// decoding goroutine its own.
type Decoder struct {
	all      bool
	only     uint64      // types 0..63 decoded in full, when not all
	onlyRest []EventType // the others
	alias    bool
	strs     map[string]string // nil: no interning
	typeNum  protowire.Number  // Event.type
	msgs     [numMsgs]table
}

// NewDecoder returns a Decoder that keeps what o says.
func NewDecoder(o DecoderOptions) *Decoder {
	d := &Decoder{all: len(o.Only) == 0, alias: o.AliasBytes}
	for _, t := range o.Only {
		if t >= 0 && t < 64 {
			d.only |= 1 << uint(t)
		} else {
			d.onlyRest = append(d.onlyRest, t)
		}
	}
	if o.Intern {
		d.strs = make(map[string]string)
	}
	specs := fieldSpecs()
	for id := field(1); id < numFields; id++ {
		sp := specs[id]
		fd := sp.msg.descriptor().Fields().ByName(sp.name)
		if fd == nil || fd.Kind() != sp.kind || fd.IsList() != sp.list || fd.Number() >= maxFieldNum {
			continue // not as the decoder expects: the fallback decodes it (and the tests fail)
		}
		if sp.kind == protoreflect.MessageKind && fd.Message().FullName() != sp.sub.descriptor().FullName() {
			continue
		}
		wt := protowire.VarintType
		switch sp.kind {
		case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind:
			wt = protowire.BytesType
		}
		t := &d.msgs[sp.msg]
		tag := int(protowire.EncodeTag(fd.Number(), wt))
		for len(t.byTag) <= tag {
			t.byTag = append(t.byTag, entry{})
		}
		sub := noMsg
		if sp.kind == protoreflect.MessageKind {
			sub = sp.sub
		}
		t.byTag[tag] = entry{id: id, wt: wt, list: sp.list, text: sp.kind == protoreflect.StringKind, sub: sub}
		if id == evType {
			d.typeNum = fd.Number()
		}
	}
	return d
}

// Slot is a reusable decode target: an Event, one body of each type and the
// buffers behind them, so that decoding a canonical event allocates only
// the strings it keeps. The zero Slot is ready to use; do not copy one. An
// Event that Decode returns from a Slot is valid until the next Decode into
// that Slot (the strings in it stay valid for good).
type Slot struct {
	ev Event

	connected    SessionConnected
	reconnected  SessionReconnected
	notification NotificationSent
	kick         KickRequested
	banned       UserBanned
	unbanned     UserUnbanned
	disconnected SessionDisconnected
	rejected     ConnectRejected
	revoked      TokenRevoked
	refused      AdminCallRefused
	refreshed    SessionTokenRefreshed
	refreshNo    TokenRefreshRefused
	token        ClientToken // the body's token: an event has at most one
	drained      NodeDrained
	policy       LoginPolicy // a connect's or reconnect's (one body per event)

	wConnected    Event_SessionConnected
	wReconnected  Event_SessionReconnected
	wNotification Event_NotificationSent
	wKick         Event_KickRequested
	wBanned       Event_UserBanned
	wUnbanned     Event_UserUnbanned
	wDisconnected Event_SessionDisconnected
	wRejected     Event_ConnectRejected
	wRevoked      Event_TokenRevoked
	wRefused      Event_AdminCallRefused
	wRefreshed    Event_SessionTokenRefreshed
	wRefreshNo    Event_TokenRefreshRefused
	wDrained      Event_NodeDrained

	ids  []string // backing array of a body's supersedes
	buf  []byte   // copies of byte fields (without AliasBytes)
	body bool     // a body was read
}

// Decode decodes b, an encoded Event, into s (or, for anything but the
// canonical encoding, a fresh Event) and returns it. See DecoderOptions for
// what it keeps.
func (d *Decoder) Decode(s *Slot, b []byte) (*Event, error) {
	if ev, ok := d.fast(s, b); ok {
		return ev, nil
	}
	ev := new(Event)
	if err := proto.Unmarshal(b, ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// fast decodes a canonical encoding into s; it reports false for anything
// else.
func (d *Decoder) fast(s *Slot, b []byte) (*Event, bool) {
	// The type comes first in the canonical encoding; it decides what to
	// keep.
	var typ EventType
	if num, wt, n := protowire.ConsumeTag(b); n > 0 && num == d.typeNum && wt == protowire.VarintType {
		v, m := protowire.ConsumeVarint(b[n:])
		if m < 0 {
			return nil, false
		}
		typ = EventType(int32(v))
	}
	s.ev = Event{Type: typ}
	s.buf = s.buf[:0]
	s.body = false
	if !d.walk(s, msgEvent, b, d.keeps(typ)) {
		return nil, false
	}
	return &s.ev, true
}

// keeps reports whether events of type t are decoded in full.
func (d *Decoder) keeps(t EventType) bool {
	if d.all {
		return true
	}
	if t >= 0 && t < 64 {
		return d.only&(1<<uint(t)) != 0
	}
	for _, o := range d.onlyRest {
		if o == t {
			return true
		}
	}
	return false
}

// walk reads the fields of message m, encoded in b, into s: all of them if
// keep, else it only checks them (strings must be UTF-8, bodies canonical)
// and stores nothing the caller sees. It reports false for anything but
// the canonical encoding of a message the decoder knows entirely.
func (d *Decoder) walk(s *Slot, m msg, b []byte, keep bool) bool {
	fields := d.msgs[m].byTag
	ev := &s.ev
	var last protowire.Number
	for len(b) > 0 {
		// Tags, lengths and most varints are one byte: read those here
		// rather than through protowire's calls.
		var tag uint64
		n := 1
		if b[0] < 0x80 {
			tag = uint64(b[0])
		} else if tag, n = protowire.ConsumeVarint(b); n < 0 {
			return false
		}
		if tag >= uint64(len(fields)) {
			return false
		}
		e := fields[tag] // the zero entry for unknown fields and wrong wire types
		num := protowire.Number(tag >> 3)
		if e.id == noField || num < last || (num == last && !e.list) {
			return false
		}
		last = num
		b = b[n:]
		var v uint64
		var x []byte
		switch {
		case len(b) == 0:
			return false
		case e.wt == protowire.VarintType:
			if b[0] < 0x80 {
				v, n = uint64(b[0]), 1
			} else if v, n = protowire.ConsumeVarint(b); n < 0 {
				return false
			}
		case b[0] < 0x80:
			l := int(b[0])
			if l >= len(b) {
				return false
			}
			x, n = b[1:1+l:1+l], 1+l
		default:
			if x, n = protowire.ConsumeBytes(b); n < 0 {
				return false
			}
		}
		b = b[n:]
		if e.text && !utf8.Valid(x) {
			return false // proto3 strings are UTF-8: the fallback gives the error
		}
		if !keep && e.sub == noMsg {
			continue // checked; only bodies have more to check
		}
		switch e.id {
		// Event
		case evType:
			ev.Type = EventType(int32(v))
		case evUser:
			ev.User = string(x)
		case evDevice:
			ev.Device = d.shared(x)
		case evSession:
			ev.Session = string(x)
		case evNode:
			ev.Node = d.shared(x)
		case evActor:
			ev.Actor = d.shared(x)
		case evReason:
			ev.Reason = d.shared(x)
		case evSessionConnected:
			if s.body {
				return false // a second body: proto.Unmarshal keeps the last
			}
			s.body = true
			c := &s.connected
			*c = SessionConnected{Supersedes: s.ids[:0]}
			ok := d.walk(s, msgSessionConnected, x, keep)
			c.Supersedes = s.keepIDs(c.Supersedes)
			if !ok {
				return false
			}
			if keep {
				s.wConnected.SessionConnected = c
				ev.Body = &s.wConnected
			}
		case evSessionReconnected:
			if s.body {
				return false
			}
			s.body = true
			c := &s.reconnected
			*c = SessionReconnected{Supersedes: s.ids[:0]}
			ok := d.walk(s, msgSessionReconnected, x, keep)
			c.Supersedes = s.keepIDs(c.Supersedes)
			if !ok {
				return false
			}
			if keep {
				s.wReconnected.SessionReconnected = c
				ev.Body = &s.wReconnected
			}
		case evNotificationSent:
			if s.body {
				return false
			}
			s.body = true
			s.notification = NotificationSent{}
			if !d.walk(s, msgNotificationSent, x, keep) {
				return false
			}
			if keep {
				s.wNotification.NotificationSent = &s.notification
				ev.Body = &s.wNotification
			}
		case evKickRequested:
			if s.body {
				return false
			}
			s.body = true
			s.kick = KickRequested{}
			if !d.walk(s, msgKickRequested, x, keep) {
				return false
			}
			if keep {
				s.wKick.KickRequested = &s.kick
				ev.Body = &s.wKick
			}
		case evUserBanned:
			if s.body {
				return false
			}
			s.body = true
			s.banned = UserBanned{}
			if !d.walk(s, msgUserBanned, x, keep) {
				return false
			}
			if keep {
				s.wBanned.UserBanned = &s.banned
				ev.Body = &s.wBanned
			}
		case evUserUnbanned:
			if s.body {
				return false
			}
			s.body = true
			s.unbanned = UserUnbanned{}
			if !d.walk(s, msgUserUnbanned, x, keep) {
				return false
			}
			if keep {
				s.wUnbanned.UserUnbanned = &s.unbanned
				ev.Body = &s.wUnbanned
			}
		case evSessionDisconnected:
			if s.body {
				return false
			}
			s.body = true
			s.disconnected = SessionDisconnected{}
			if !d.walk(s, msgSessionDisconnected, x, keep) {
				return false
			}
			if keep {
				s.wDisconnected.SessionDisconnected = &s.disconnected
				ev.Body = &s.wDisconnected
			}
		case evConnectRejected:
			if s.body {
				return false
			}
			s.body = true
			s.rejected = ConnectRejected{}
			if !d.walk(s, msgConnectRejected, x, keep) {
				return false
			}
			if keep {
				s.wRejected.ConnectRejected = &s.rejected
				ev.Body = &s.wRejected
			}
		case evTokenRevoked:
			if s.body {
				return false
			}
			s.body = true
			s.revoked = TokenRevoked{}
			if !d.walk(s, msgTokenRevoked, x, keep) {
				return false
			}
			if keep {
				s.wRevoked.TokenRevoked = &s.revoked
				ev.Body = &s.wRevoked
			}
		case evAdminCallRefused:
			if s.body {
				return false
			}
			s.body = true
			s.refused = AdminCallRefused{}
			if !d.walk(s, msgAdminCallRefused, x, keep) {
				return false
			}
			if keep {
				s.wRefused.AdminCallRefused = &s.refused
				ev.Body = &s.wRefused
			}
		case evSessionTokenRefreshed:
			if s.body {
				return false
			}
			s.body = true
			s.refreshed = SessionTokenRefreshed{}
			if !d.walk(s, msgSessionTokenRefreshed, x, keep) {
				return false
			}
			if keep {
				s.wRefreshed.SessionTokenRefreshed = &s.refreshed
				ev.Body = &s.wRefreshed
			}
		case evTokenRefreshRefused:
			if s.body {
				return false
			}
			s.body = true
			s.refreshNo = TokenRefreshRefused{}
			if !d.walk(s, msgTokenRefreshRefused, x, keep) {
				return false
			}
			if keep {
				s.wRefreshNo.TokenRefreshRefused = &s.refreshNo
				ev.Body = &s.wRefreshNo
			}
		case evNodeDrained:
			if s.body {
				return false
			}
			s.body = true
			s.drained = NodeDrained{}
			if !d.walk(s, msgNodeDrained, x, keep) {
				return false
			}
			if keep {
				s.wDrained.NodeDrained = &s.drained
				ev.Body = &s.wDrained
			}

		// SessionConnected
		case connRemoteAddr:
			s.connected.RemoteAddr = string(x)
		case connHeartbeatMs:
			s.connected.HeartbeatMs = int64(v)
		case connSupersedes:
			s.connected.Supersedes = append(s.connected.Supersedes, string(x))
		case connToken:
			if !d.token(s, x, keep) {
				return false
			}
			if keep {
				s.connected.Token = &s.token
			}
		case connPolicy:
			s.policy = LoginPolicy{}
			if !d.walk(s, msgLoginPolicy, x, keep) {
				return false
			}
			s.connected.Policy = &s.policy
		case connTransport:
			s.connected.Transport = d.transport(x)

		// SessionReconnected
		case reconPreviousSession:
			s.reconnected.PreviousSession = string(x)
		case reconLastAckedSeq:
			s.reconnected.LastAckedSeq = v
		case reconRemoteAddr:
			s.reconnected.RemoteAddr = string(x)
		case reconHeartbeatMs:
			s.reconnected.HeartbeatMs = int64(v)
		case reconSupersedes:
			s.reconnected.Supersedes = append(s.reconnected.Supersedes, string(x))
		case reconToken:
			if !d.token(s, x, keep) {
				return false
			}
			if keep {
				s.reconnected.Token = &s.token
			}
		case reconPolicy:
			s.policy = LoginPolicy{}
			if !d.walk(s, msgLoginPolicy, x, keep) {
				return false
			}
			s.reconnected.Policy = &s.policy
		case reconTransport:
			s.reconnected.Transport = d.transport(x)

		// LoginPolicy
		case polMaxPerUser:
			s.policy.MaxPerUser = uint32(v)
		case polOnePerDevice:
			s.policy.OnePerDevice = v != 0

		// NotificationSent
		case notifTarget:
			s.notification.Target = NotificationTarget(int32(v))
		case notifTopic:
			s.notification.Topic = d.shared(x)
		case notifPayload:
			s.notification.Payload = d.bytes(s, x)

		// KickRequested
		case kickTarget:
			s.kick.Target = KickTarget(int32(v))
		case kickMode:
			s.kick.Mode = KickMode(int32(v))
		case kickReconnect:
			s.kick.Reconnect = Reconnect(int32(v))
		case kickReconnectAfterMs:
			s.kick.ReconnectAfterMs = int64(v)
		case kickRefuseConnectsMs:
			s.kick.RefuseConnectsMs = int64(v)
		case kickExceptSession:
			s.kick.ExceptSession = string(x)
		case kickExceptDevice:
			s.kick.ExceptDevice = d.shared(x)

		// UserBanned
		case banUntilUnixNano:
			s.banned.UntilUnixNano = int64(v)

		// SessionDisconnected
		case discCause:
			s.disconnected.Cause = DisconnectCause(int32(v))
		case discCauseEventID:
			s.disconnected.CauseEventId = d.bytes(s, x)
		case discSupersededBy:
			s.disconnected.SupersededBy = string(x)
		case discReconnect:
			s.disconnected.Reconnect = Reconnect(int32(v))
		case discReconnectAfterMs:
			s.disconnected.ReconnectAfterMs = int64(v)

		// ConnectRejected
		case rejCode:
			s.rejected.Code = d.shared(x)
		case rejCount:
			s.rejected.Count = uint32(v)
		case rejRemoteAddr:
			s.rejected.RemoteAddr = string(x)
		case rejCauseEventID:
			s.rejected.CauseEventId = d.bytes(s, x)

		// TokenRevoked
		case revTokenID:
			s.revoked.TokenId = string(x)
		case revIssuedBeforeUnixNano:
			s.revoked.IssuedBeforeUnixNano = int64(v)
		case revUntilUnixNano:
			s.revoked.UntilUnixNano = int64(v)

		// AdminCallRefused
		case refMethod:
			s.refused.Method = d.shared(x)
		case refRole:
			s.refused.Role = d.shared(x)
		case refNeeds:
			s.refused.Needs = d.shared(x)
		case refCount:
			s.refused.Count = uint32(v)
		case refRemoteAddr:
			s.refused.RemoteAddr = string(x)

		// SessionTokenRefreshed
		case refreshedToken:
			if !d.token(s, x, keep) {
				return false
			}
			if keep {
				s.refreshed.Token = &s.token
			}

		// TokenRefreshRefused
		case refreshNoCode:
			s.refreshNo.Code = d.shared(x)
		case refreshNoToken:
			if !d.token(s, x, keep) {
				return false
			}
			if keep {
				s.refreshNo.Token = &s.token
			}
		case refreshNoTokenUser:
			s.refreshNo.TokenUser = string(x)
		case refreshNoTokenDevice:
			s.refreshNo.TokenDevice = d.shared(x)

		// ClientToken
		case tokID:
			s.token.Id = string(x)
		case tokIssuedUnixNano:
			s.token.IssuedUnixNano = int64(v)
		case tokExpiresUnixNano:
			s.token.ExpiresUnixNano = int64(v)

		// NodeDrained
		case drainNode:
			s.drained.Node = d.shared(x)
		case drainWindowMs:
			s.drained.WindowMs = int64(v)

		default:
			return false
		}
	}
	return true
}

// token reads a body's ClientToken, encoded in x, into s.token (or only
// checks it, without keep); it reports false as walk does.
func (d *Decoder) token(s *Slot, x []byte, keep bool) bool {
	s.token = ClientToken{}
	return d.walk(s, msgClientToken, x, keep)
}

// keepIDs keeps the backing array of ids for the next event and returns
// ids, nil if empty (as proto.Unmarshal leaves it).
func (s *Slot) keepIDs(ids []string) []string {
	if cap(ids) > cap(s.ids) {
		s.ids = ids[:0]
	}
	if len(ids) == 0 {
		return nil
	}
	return ids
}

// shared returns x as a string, through the interner if interning: for
// the fields few values repeat in.
func (d *Decoder) shared(x []byte) string {
	if d.strs == nil {
		return string(x)
	}
	return d.intern(x)
}

// transport returns a connect's transport name: the names the hub records
// share one string each, interning or not, instead of a copy per session.
func (d *Decoder) transport(x []byte) string {
	if name, ok := knownTransport(x); ok {
		return name
	}
	return d.shared(x)
}

// KnownTransport returns the one shared copy of a transport name the hub
// records ("grpc", "websocket+proto", "websocket+json"), or name itself.
func KnownTransport(name string) string {
	if known, ok := knownTransport([]byte(name)); ok {
		return known
	}
	return name
}

func knownTransport(x []byte) (string, bool) {
	switch string(x) { // no allocation for the comparison
	case "grpc":
		return "grpc", true
	case "websocket+proto":
		return "websocket+proto", true
	case "websocket+json":
		return "websocket+json", true
	}
	return "", false
}

// bytes returns x (AliasBytes) or a copy of it in the slot.
func (d *Decoder) bytes(s *Slot, x []byte) []byte {
	if d.alias {
		return x
	}
	// Earlier copies of this event stay valid if append moves buf: they
	// keep the old array, which nothing writes any more.
	start := len(s.buf)
	s.buf = append(s.buf, x...)
	return s.buf[start:len(s.buf):len(s.buf)]
}

// intern returns x as a string, shared with earlier events.
func (d *Decoder) intern(x []byte) string {
	if s, ok := d.strs[string(x)]; ok { // no allocation for the lookup
		return s
	}
	s := string(x)
	if len(x) <= internLen && len(d.strs) < internMax {
		d.strs[s] = s
	}
	return s
}

// maxFieldNum bounds the field numbers the decoder's tables hold: a field
// numbered higher is left to the fallback (and the tests fail).
const maxFieldNum = 256

// table maps a message's tags (field number and wire type) to what the
// decoder does with them.
type table struct {
	byTag []entry // by tag; the zero entry: unknown field or wrong wire type
}

// entry is one field of a message as the decoder reads it.
type entry struct {
	id   field
	wt   protowire.Type // the only wire type of the canonical encoding
	list bool           // repeated: may follow itself
	text bool           // a string: must be UTF-8
	sub  msg            // for a message field: its message; else noMsg
}

// msg names the messages the decoder reads.
type msg uint8

const (
	msgEvent msg = iota
	msgSessionConnected
	msgSessionReconnected
	msgNotificationSent
	msgKickRequested
	msgUserBanned
	msgUserUnbanned
	msgSessionDisconnected
	msgConnectRejected
	msgTokenRevoked
	msgAdminCallRefused
	msgSessionTokenRefreshed
	msgTokenRefreshRefused
	msgClientToken
	msgNodeDrained
	msgLoginPolicy
	numMsgs

	noMsg = numMsgs // not a message field
)

func (m msg) descriptor() protoreflect.MessageDescriptor {
	var pm proto.Message
	switch m {
	case msgEvent:
		pm = (*Event)(nil)
	case msgSessionConnected:
		pm = (*SessionConnected)(nil)
	case msgSessionReconnected:
		pm = (*SessionReconnected)(nil)
	case msgNotificationSent:
		pm = (*NotificationSent)(nil)
	case msgKickRequested:
		pm = (*KickRequested)(nil)
	case msgUserBanned:
		pm = (*UserBanned)(nil)
	case msgUserUnbanned:
		pm = (*UserUnbanned)(nil)
	case msgSessionDisconnected:
		pm = (*SessionDisconnected)(nil)
	case msgConnectRejected:
		pm = (*ConnectRejected)(nil)
	case msgTokenRevoked:
		pm = (*TokenRevoked)(nil)
	case msgAdminCallRefused:
		pm = (*AdminCallRefused)(nil)
	case msgSessionTokenRefreshed:
		pm = (*SessionTokenRefreshed)(nil)
	case msgTokenRefreshRefused:
		pm = (*TokenRefreshRefused)(nil)
	case msgClientToken:
		pm = (*ClientToken)(nil)
	case msgNodeDrained:
		pm = (*NodeDrained)(nil)
	case msgLoginPolicy:
		pm = (*LoginPolicy)(nil)
	default:
		return nil
	}
	return pm.ProtoReflect().Descriptor()
}

// field names the fields the decoder reads, across messages; 0 is none.
type field uint8

const (
	noField field = iota

	evType
	evUser
	evDevice
	evSession
	evNode
	evActor
	evReason
	evSessionConnected
	evSessionReconnected
	evNotificationSent
	evKickRequested
	evUserBanned
	evUserUnbanned
	evSessionDisconnected
	evConnectRejected
	evTokenRevoked
	evAdminCallRefused
	evSessionTokenRefreshed
	evTokenRefreshRefused
	evNodeDrained

	connRemoteAddr
	connHeartbeatMs
	connSupersedes
	connToken
	connPolicy
	connTransport

	reconPreviousSession
	reconLastAckedSeq
	reconRemoteAddr
	reconHeartbeatMs
	reconSupersedes
	reconToken
	reconPolicy
	reconTransport

	polMaxPerUser
	polOnePerDevice

	notifTarget
	notifTopic
	notifPayload

	kickTarget
	kickMode
	kickReconnect
	kickReconnectAfterMs
	kickRefuseConnectsMs
	kickExceptSession
	kickExceptDevice

	banUntilUnixNano

	discCause
	discCauseEventID
	discSupersededBy
	discReconnect
	discReconnectAfterMs

	rejCode
	rejCount
	rejRemoteAddr
	rejCauseEventID

	revTokenID
	revIssuedBeforeUnixNano
	revUntilUnixNano

	refMethod
	refRole
	refNeeds
	refCount
	refRemoteAddr

	refreshedToken

	refreshNoCode
	refreshNoToken
	refreshNoTokenUser
	refreshNoTokenDevice

	tokID
	tokIssuedUnixNano
	tokExpiresUnixNano

	drainNode
	drainWindowMs

	numFields
)

// fieldSpec says where a field is in the schema, by name, and what the
// decoder expects of it.
type fieldSpec struct {
	msg  msg
	name protoreflect.Name
	kind protoreflect.Kind
	list bool
	sub  msg // for MessageKind
}

// fieldSpecs returns the schema place of every field, indexed by field
// (noField's is empty).
func fieldSpecs() [numFields]fieldSpec {
	const (
		str  = protoreflect.StringKind
		byt  = protoreflect.BytesKind
		enum = protoreflect.EnumKind
		i64  = protoreflect.Int64Kind
		u64  = protoreflect.Uint64Kind
		u32  = protoreflect.Uint32Kind
		sub  = protoreflect.MessageKind
		boo  = protoreflect.BoolKind
	)
	return [numFields]fieldSpec{
		evType:                  {msg: msgEvent, name: "type", kind: enum},
		evUser:                  {msg: msgEvent, name: "user", kind: str},
		evDevice:                {msg: msgEvent, name: "device", kind: str},
		evSession:               {msg: msgEvent, name: "session", kind: str},
		evNode:                  {msg: msgEvent, name: "node", kind: str},
		evActor:                 {msg: msgEvent, name: "actor", kind: str},
		evReason:                {msg: msgEvent, name: "reason", kind: str},
		evSessionConnected:      {msg: msgEvent, name: "session_connected", kind: sub, sub: msgSessionConnected},
		evSessionReconnected:    {msg: msgEvent, name: "session_reconnected", kind: sub, sub: msgSessionReconnected},
		evNotificationSent:      {msg: msgEvent, name: "notification_sent", kind: sub, sub: msgNotificationSent},
		evKickRequested:         {msg: msgEvent, name: "kick_requested", kind: sub, sub: msgKickRequested},
		evUserBanned:            {msg: msgEvent, name: "user_banned", kind: sub, sub: msgUserBanned},
		evUserUnbanned:          {msg: msgEvent, name: "user_unbanned", kind: sub, sub: msgUserUnbanned},
		evSessionDisconnected:   {msg: msgEvent, name: "session_disconnected", kind: sub, sub: msgSessionDisconnected},
		evConnectRejected:       {msg: msgEvent, name: "connect_rejected", kind: sub, sub: msgConnectRejected},
		evTokenRevoked:          {msg: msgEvent, name: "token_revoked", kind: sub, sub: msgTokenRevoked},
		evAdminCallRefused:      {msg: msgEvent, name: "admin_call_refused", kind: sub, sub: msgAdminCallRefused},
		evSessionTokenRefreshed: {msg: msgEvent, name: "session_token_refreshed", kind: sub, sub: msgSessionTokenRefreshed},
		evTokenRefreshRefused:   {msg: msgEvent, name: "token_refresh_refused", kind: sub, sub: msgTokenRefreshRefused},
		evNodeDrained:           {msg: msgEvent, name: "node_drained", kind: sub, sub: msgNodeDrained},

		connRemoteAddr:  {msg: msgSessionConnected, name: "remote_addr", kind: str},
		connHeartbeatMs: {msg: msgSessionConnected, name: "heartbeat_ms", kind: i64},
		connSupersedes:  {msg: msgSessionConnected, name: "supersedes", kind: str, list: true},
		connToken:       {msg: msgSessionConnected, name: "token", kind: sub, sub: msgClientToken},
		connPolicy:      {msg: msgSessionConnected, name: "policy", kind: sub, sub: msgLoginPolicy},
		connTransport:   {msg: msgSessionConnected, name: "transport", kind: str},

		reconPreviousSession: {msg: msgSessionReconnected, name: "previous_session", kind: str},
		reconLastAckedSeq:    {msg: msgSessionReconnected, name: "last_acked_seq", kind: u64},
		reconRemoteAddr:      {msg: msgSessionReconnected, name: "remote_addr", kind: str},
		reconHeartbeatMs:     {msg: msgSessionReconnected, name: "heartbeat_ms", kind: i64},
		reconSupersedes:      {msg: msgSessionReconnected, name: "supersedes", kind: str, list: true},
		reconToken:           {msg: msgSessionReconnected, name: "token", kind: sub, sub: msgClientToken},
		reconPolicy:          {msg: msgSessionReconnected, name: "policy", kind: sub, sub: msgLoginPolicy},
		reconTransport:       {msg: msgSessionReconnected, name: "transport", kind: str},

		polMaxPerUser:   {msg: msgLoginPolicy, name: "max_per_user", kind: u32},
		polOnePerDevice: {msg: msgLoginPolicy, name: "one_per_device", kind: boo},

		notifTarget:  {msg: msgNotificationSent, name: "target", kind: enum},
		notifTopic:   {msg: msgNotificationSent, name: "topic", kind: str},
		notifPayload: {msg: msgNotificationSent, name: "payload", kind: byt},

		kickTarget:           {msg: msgKickRequested, name: "target", kind: enum},
		kickMode:             {msg: msgKickRequested, name: "mode", kind: enum},
		kickReconnect:        {msg: msgKickRequested, name: "reconnect", kind: enum},
		kickReconnectAfterMs: {msg: msgKickRequested, name: "reconnect_after_ms", kind: i64},
		kickRefuseConnectsMs: {msg: msgKickRequested, name: "refuse_connects_ms", kind: i64},
		kickExceptSession:    {msg: msgKickRequested, name: "except_session", kind: str},
		kickExceptDevice:     {msg: msgKickRequested, name: "except_device", kind: str},

		banUntilUnixNano: {msg: msgUserBanned, name: "until_unix_nano", kind: i64},

		discCause:            {msg: msgSessionDisconnected, name: "cause", kind: enum},
		discCauseEventID:     {msg: msgSessionDisconnected, name: "cause_event_id", kind: byt},
		discSupersededBy:     {msg: msgSessionDisconnected, name: "superseded_by", kind: str},
		discReconnect:        {msg: msgSessionDisconnected, name: "reconnect", kind: enum},
		discReconnectAfterMs: {msg: msgSessionDisconnected, name: "reconnect_after_ms", kind: i64},

		rejCode:         {msg: msgConnectRejected, name: "code", kind: str},
		rejCount:        {msg: msgConnectRejected, name: "count", kind: u32},
		rejRemoteAddr:   {msg: msgConnectRejected, name: "remote_addr", kind: str},
		rejCauseEventID: {msg: msgConnectRejected, name: "cause_event_id", kind: byt},

		revTokenID:              {msg: msgTokenRevoked, name: "token_id", kind: str},
		revIssuedBeforeUnixNano: {msg: msgTokenRevoked, name: "issued_before_unix_nano", kind: i64},
		revUntilUnixNano:        {msg: msgTokenRevoked, name: "until_unix_nano", kind: i64},

		refMethod:     {msg: msgAdminCallRefused, name: "method", kind: str},
		refRole:       {msg: msgAdminCallRefused, name: "role", kind: str},
		refNeeds:      {msg: msgAdminCallRefused, name: "needs", kind: str},
		refCount:      {msg: msgAdminCallRefused, name: "count", kind: u32},
		refRemoteAddr: {msg: msgAdminCallRefused, name: "remote_addr", kind: str},

		refreshedToken: {msg: msgSessionTokenRefreshed, name: "token", kind: sub, sub: msgClientToken},

		refreshNoCode:        {msg: msgTokenRefreshRefused, name: "code", kind: str},
		refreshNoToken:       {msg: msgTokenRefreshRefused, name: "token", kind: sub, sub: msgClientToken},
		refreshNoTokenUser:   {msg: msgTokenRefreshRefused, name: "token_user", kind: str},
		refreshNoTokenDevice: {msg: msgTokenRefreshRefused, name: "token_device", kind: str},

		tokID:              {msg: msgClientToken, name: "id", kind: str},
		tokIssuedUnixNano:  {msg: msgClientToken, name: "issued_unix_nano", kind: i64},
		tokExpiresUnixNano: {msg: msgClientToken, name: "expires_unix_nano", kind: i64},

		drainNode:     {msg: msgNodeDrained, name: "node", kind: str},
		drainWindowMs: {msg: msgNodeDrained, name: "window_ms", kind: i64},
	}
}
