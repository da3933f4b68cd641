package hub

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// Cause is why a session ended, as the ledger records it.
type Cause eventpb.DisconnectCause

// The causes a session can end with.
const (
	CauseClientClosed   = Cause(eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED)
	CauseKicked         = Cause(eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED)
	CauseBanned         = Cause(eventpb.DisconnectCause_DISCONNECT_CAUSE_BANNED)
	CauseSuperseded     = Cause(eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED)
	CauseIdleTimeout    = Cause(eventpb.DisconnectCause_DISCONNECT_CAUSE_IDLE_TIMEOUT)
	CauseServerShutdown = Cause(eventpb.DisconnectCause_DISCONNECT_CAUSE_SERVER_SHUTDOWN)
	CauseLost           = Cause(eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST)
	CauseSlowConsumer   = Cause(eventpb.DisconnectCause_DISCONNECT_CAUSE_SLOW_CONSUMER)
	CauseRevoked        = Cause(eventpb.DisconnectCause_DISCONNECT_CAUSE_REVOKED)
	CauseTokenExpired   = Cause(eventpb.DisconnectCause_DISCONNECT_CAUSE_TOKEN_EXPIRED)
	CauseDrained        = Cause(eventpb.DisconnectCause_DISCONNECT_CAUSE_DRAINED)
)

// String is the cause's snake_case name ("kicked", "client_closed"), as
// metrics, the audit tool and the Go client name it.
func (c Cause) String() string {
	name, ok := eventpb.DisconnectCause_name[int32(c)]
	if !ok {
		return "cause_" + strconv.Itoa(int(c))
	}
	return strings.ToLower(strings.TrimPrefix(name, "DISCONNECT_CAUSE_"))
}

// Disconnect is a server-initiated end of a session: what the client is
// told before its transport closes (a Disconnect frame, then a gRPC status
// or a WebSocket close code carrying the same meaning), and what the
// session_disconnected event records.
type Disconnect struct {
	Cause          Cause
	Reason         string
	Reconnect      eventpb.Reconnect
	ReconnectAfter time.Duration
	// EventID is the ledger event behind the end (the kick, the ban, the
	// superseding connect, the revocation); zero when there is none (idle,
	// shutdown, token expiry).
	EventID      ulid.ULID
	Actor        string
	SupersededBy string
}

func (d *Disconnect) Error() string {
	return fmt.Sprintf("disconnected: %s: %s", d.Cause, d.Reason)
}

// eventID is the id as sent on the wire: "" when there is none.
func (d *Disconnect) eventID() string {
	if d.EventID == (ulid.ULID{}) {
		return ""
	}
	return d.EventID.String()
}

// causeCodes maps each cause the server tells a client about to its wire
// code; TestWireEnumsAgree keeps it whole.
var causeCodes = map[Cause]hubpb.DisconnectCode{
	CauseKicked:         hubpb.DisconnectCode_DISCONNECT_CODE_KICKED,
	CauseBanned:         hubpb.DisconnectCode_DISCONNECT_CODE_BANNED,
	CauseSuperseded:     hubpb.DisconnectCode_DISCONNECT_CODE_SUPERSEDED,
	CauseIdleTimeout:    hubpb.DisconnectCode_DISCONNECT_CODE_IDLE_TIMEOUT,
	CauseServerShutdown: hubpb.DisconnectCode_DISCONNECT_CODE_SERVER_SHUTDOWN,
	CauseSlowConsumer:   hubpb.DisconnectCode_DISCONNECT_CODE_SLOW_CONSUMER,
	CauseRevoked:        hubpb.DisconnectCode_DISCONNECT_CODE_REVOKED,
	CauseTokenExpired:   hubpb.DisconnectCode_DISCONNECT_CODE_TOKEN_EXPIRED,
	CauseDrained:        hubpb.DisconnectCode_DISCONNECT_CODE_DRAINED,
	CauseLost:           hubpb.DisconnectCode_DISCONNECT_CODE_LOST,
}

// Wire is the Disconnect as a frame: the one place the domain value
// becomes the wire's.
func (d *Disconnect) Wire() *hubpb.Disconnect {
	return &hubpb.Disconnect{
		Code: causeCodes[d.Cause], Reason: d.Reason, Reconnect: hubpb.Reconnect(d.Reconnect),
		ReconnectAfterMs: d.ReconnectAfter.Milliseconds(), EventId: d.eventID(), Actor: d.Actor, SupersededBy: d.SupersededBy,
	}
}

// record fills the body of the session's session_disconnected event.
func (d *Disconnect) record(body *eventpb.SessionDisconnected) {
	body.Reconnect = d.Reconnect
	body.ReconnectAfterMs = d.ReconnectAfter.Milliseconds()
	body.SupersededBy = d.SupersededBy
	if d.EventID != (ulid.ULID{}) {
		body.CauseEventId = d.EventID[:]
	}
}
