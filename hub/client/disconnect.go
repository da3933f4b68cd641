package client

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/termtext"
)

// Cause says why a session ended or a connect attempt failed.
type Cause uint8

const (
	// CauseUnknown is a Disconnect code this client does not know (a newer
	// server); its reconnect advice is still honoured.
	CauseUnknown Cause = iota
	// CauseClosed: the application called Close (a normal end); its name
	// is the ledger's, "client_closed".
	CauseClosed
	// CauseKicked: an operator kicked the session.
	CauseKicked
	// CauseBanned: the user was banned.
	CauseBanned
	// CauseSuperseded: a newer login of the same user (or user and device)
	// took the session's place under the single-device policy. The client
	// never reconnects after it: coming back would throw out the newer
	// login, which would come back in turn.
	CauseSuperseded
	// CauseIdleTimeout: the server heard nothing from the client for its
	// idle timeout.
	CauseIdleTimeout
	// CauseServerShutdown: the server is stopping.
	CauseServerShutdown
	// CauseSlowConsumer: notifications were not read fast enough.
	CauseSlowConsumer
	// CauseLost: the connection broke without a Disconnect (an abort-mode
	// kick, a network failure, a server crash) or the server could not be
	// reached.
	CauseLost
	// CauseRejected: the server refused the connect or the resume
	// (Disconnect.RejectCode says why: banned, rate_limited, node_full,
	// draining, resume_refused, revoked, kicked, unauthenticated, invalid).
	CauseRejected
	// CauseDrained: an operator drained the node (to upgrade or remove
	// it): the client comes back after the advised delay, on another node
	// when it knows several.
	CauseDrained
	// CauseRevoked: the token the session authenticated with was revoked.
	// The client does not come back by itself (the advice is not
	// allowed): the application decides whether to get the user a new
	// token.
	CauseRevoked
	// CauseTokenExpired: the session's token expired before a fresh one
	// was sent (see WithTokenRefresh). With a token source the client
	// reconnects with a fresh token.
	CauseTokenExpired
)

// The names are the ledger's (session_disconnected's cause), so a client
// and the audit use one vocabulary; rejected and unknown are the client's
// own.
var causeNames = [...]string{"unknown", "client_closed", "kicked", "banned", "superseded", "idle_timeout", "server_shutdown", "slow_consumer", "lost", "rejected",
	"drained", "revoked", "token_expired"}

// String returns the cause's snake_case name, e.g. "kicked".
func (c Cause) String() string {
	if int(c) < len(causeNames) {
		return causeNames[c]
	}
	return fmt.Sprintf("cause(%d)", uint8(c))
}

// Reconnect is the server's advice on coming back.
type Reconnect uint8

const (
	// ReconnectAllowed: the client may come back at once (with backoff).
	ReconnectAllowed Reconnect = iota + 1
	// ReconnectNotAllowed: the client must not come back on its own.
	ReconnectNotAllowed
	// ReconnectAfter: the client may come back after ReconnectAfter.
	ReconnectAfter
)

// String returns "allowed", "not_allowed" or "after".
func (r Reconnect) String() string {
	switch r {
	case ReconnectAllowed:
		return "allowed"
	case ReconnectNotAllowed:
		return "not_allowed"
	case ReconnectAfter:
		return "after"
	}
	return fmt.Sprintf("reconnect(%d)", uint8(r))
}

func reconnectOf(r hubpb.Reconnect) Reconnect {
	switch r {
	case hubpb.Reconnect_RECONNECT_NOT_ALLOWED:
		return ReconnectNotAllowed
	case hubpb.Reconnect_RECONNECT_AFTER:
		return ReconnectAfter
	}
	return ReconnectAllowed
}

func causeOf(c hubpb.DisconnectCode) Cause {
	switch c {
	case hubpb.DisconnectCode_DISCONNECT_CODE_KICKED:
		return CauseKicked
	case hubpb.DisconnectCode_DISCONNECT_CODE_BANNED:
		return CauseBanned
	case hubpb.DisconnectCode_DISCONNECT_CODE_SUPERSEDED:
		return CauseSuperseded
	case hubpb.DisconnectCode_DISCONNECT_CODE_IDLE_TIMEOUT:
		return CauseIdleTimeout
	case hubpb.DisconnectCode_DISCONNECT_CODE_SERVER_SHUTDOWN:
		return CauseServerShutdown
	case hubpb.DisconnectCode_DISCONNECT_CODE_SLOW_CONSUMER:
		return CauseSlowConsumer
	case hubpb.DisconnectCode_DISCONNECT_CODE_REVOKED:
		return CauseRevoked
	case hubpb.DisconnectCode_DISCONNECT_CODE_TOKEN_EXPIRED:
		return CauseTokenExpired
	case hubpb.DisconnectCode_DISCONNECT_CODE_DRAINED:
		return CauseDrained
	case hubpb.DisconnectCode_DISCONNECT_CODE_LOST:
		return CauseLost
	}
	return CauseUnknown
}

// Disconnect describes one end of a session or one failed connect
// attempt, as the server explained it (the Disconnect frame, or the detail
// of the final gRPC status) or as the client observed it (a lost
// connection). It implements error: Dial returns it for a refused connect,
// and Client.Err returns the one that ended the client.
type Disconnect struct {
	// Cause classifies the end.
	Cause Cause
	// Reason is the server's (or, for CauseLost, the transport's) text.
	Reason string
	// Reconnect and ReconnectAfter are the server's advice.
	Reconnect      Reconnect
	ReconnectAfter time.Duration
	// EventID is the ULID of the ledger event behind the end (the kick, the
	// ban, the superseding connect, the revocation), or behind a refused
	// connect (the revocation, the kick that still holds the device), when
	// the server named one.
	EventID string
	// Actor is who ordered the end (an operator, or "system").
	Actor string
	// SupersededBy is the new session, for CauseSuperseded.
	SupersededBy string
	// RejectCode is the server's refusal code, for CauseRejected.
	RejectCode string
	// BannedUntil is when the ban ends, for a connect refused as banned
	// (zero: no expiry), or when a kick's hold ends, for a connect refused
	// as kicked.
	BannedUntil time.Time
	// Session is the session that ended ("" when a connect attempt failed
	// before the server welcomed it).
	Session string
	// FromFrame reports whether the Disconnect frame itself was received;
	// false when the advice came only from the final status or the client
	// synthesised it (CauseLost, CauseClosed).
	FromFrame bool
	// Code is the final gRPC status code of the stream.
	Code codes.Code
	// WillReconnect reports whether the client is going to reconnect, after
	// Delay. Attempt counts the connect attempts that have failed in a row,
	// this one included: 0 for the end of a session the server welcomed,
	// n for the n-th failed attempt since (WithMaxAttempts(n) gives up at
	// n).
	WillReconnect bool
	Delay         time.Duration
	Attempt       int
}

// Error returns a one-line description, e.g. `kicked: spamming (reconnect
// not_allowed)` or `kicked: "password changed" (reconnect not_allowed)`:
// the reason is quoted unless it is one plain word, with any control
// character escaped, so printing the error cannot drive a terminal.
// Reason itself is the server's text as sent.
func (d *Disconnect) Error() string {
	var b strings.Builder
	// A reason that begins with the cause says it already ("superseded by
	// session …"): no "superseded: superseded by …".
	said := d.RejectCode == "" && d.Reason != "" && strings.HasPrefix(d.Reason, strings.ReplaceAll(d.Cause.String(), "_", " "))
	if said {
		b.WriteString(termtext.Line(d.Reason))
	} else {
		b.WriteString(d.Cause.String())
	}
	if d.RejectCode != "" {
		b.WriteString(" (" + termtext.Field(d.RejectCode) + ")")
	}
	if d.Reason != "" && !said {
		b.WriteString(": " + termtext.Field(d.Reason))
	}
	if d.Reconnect != 0 {
		b.WriteString(" (reconnect " + d.Reconnect.String())
		if d.Reconnect == ReconnectAfter {
			b.WriteString(" " + d.ReconnectAfter.String())
		}
		b.WriteString(")")
	}
	return b.String()
}

func fromFrame(f *hubpb.Disconnect) *Disconnect {
	return &Disconnect{
		Cause: causeOf(f.GetCode()), Reason: f.GetReason(), Reconnect: reconnectOf(f.GetReconnect()),
		ReconnectAfter: time.Duration(f.GetReconnectAfterMs()) * time.Millisecond,
		EventID:        f.GetEventId(), Actor: f.GetActor(), SupersededBy: f.GetSupersededBy(),
	}
}

func fromRejected(r *hubpb.Rejected) *Disconnect {
	d := &Disconnect{
		Cause: CauseRejected, RejectCode: r.GetCode(), Reason: r.GetReason(), Reconnect: reconnectOf(r.GetReconnect()),
		ReconnectAfter: time.Duration(r.GetReconnectAfterMs()) * time.Millisecond, EventID: r.GetEventId(),
	}
	if r.GetUntilUnixNano() != 0 {
		d.BannedUntil = time.Unix(0, r.GetUntilUnixNano())
	}
	return d
}

// classify turns how a stream ended into a Disconnect: the frame if one
// came, else the Disconnect or Rejected detail of the status, else the
// status code. goodbye says the client had said Goodbye.
func classify(frame *hubpb.Disconnect, err error, goodbye bool) *Disconnect {
	st := status.New(codes.OK, "")
	if err != nil && !errors.Is(err, io.EOF) {
		st = status.Convert(err)
	}
	if frame != nil {
		d := fromFrame(frame)
		d.FromFrame, d.Code = true, st.Code()
		return d
	}
	for _, det := range st.Details() {
		switch x := det.(type) {
		case *hubpb.Disconnect:
			d := fromFrame(x)
			d.Code = st.Code()
			return d
		case *hubpb.Rejected:
			d := fromRejected(x)
			d.Code = st.Code()
			return d
		}
	}
	d := &Disconnect{Code: st.Code(), Reason: st.Message()}
	switch st.Code() {
	case codes.OK:
		if goodbye {
			d.Cause, d.Reason = CauseClosed, "closed by the client"
			return d
		}
		d.Cause, d.Reconnect, d.Reason = CauseLost, ReconnectAllowed, "the server ended the stream without a Disconnect"
	case codes.Canceled:
		if goodbye {
			d.Cause = CauseClosed
			return d
		}
		d.Cause, d.Reconnect = CauseLost, ReconnectAllowed
	case codes.Unauthenticated, codes.InvalidArgument, codes.PermissionDenied, codes.Unimplemented:
		// Retrying the same Hello cannot help.
		d.Cause, d.Reconnect = CauseRejected, ReconnectNotAllowed
		d.RejectCode = map[codes.Code]string{codes.Unauthenticated: "unauthenticated", codes.InvalidArgument: "invalid",
			codes.PermissionDenied: "permission_denied", codes.Unimplemented: "unimplemented"}[st.Code()]
	default:
		d.Cause, d.Reconnect = CauseLost, ReconnectAllowed
	}
	return d
}
