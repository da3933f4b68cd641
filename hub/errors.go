package hub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

var (
	// ErrUnauthenticated: missing or wrong admin token or client JWT. The
	// message never says whether a user or session exists.
	ErrUnauthenticated = errors.New("missing or invalid credentials")
	// ErrInvalid wraps malformed requests and frames.
	ErrInvalid = errors.New("invalid request")
	// ErrShuttingDown: the hub is stopping and takes no new sessions.
	ErrShuttingDown = errors.New("hub is shutting down")
	// ErrLedger wraps a failed append: the hub fails closed.
	ErrLedger = errors.New("ledger unavailable")
	// ErrNotFound: no such live session.
	ErrNotFound = errors.New("not found")
	// ErrNotBanned: an unban of a user without an active ban.
	ErrNotBanned = errors.New("user is not banned")
	// ErrExceptNotLive: a kick's except_session is not a live session of
	// the kicked user (sparing nothing would end every session).
	ErrExceptNotLive = errors.New("the session to spare is not live")
	// ErrSecretFileMode: a secret file (admin tokens, resume key, JWT
	// secret) that users other than its owner may read or write.
	ErrSecretFileMode = errors.New("secret file open to other users")

	// ErrClientCert: the hub requires a verified client certificate
	// (--client-ca) and the caller has none (Unauthenticated).
	ErrClientCert = errors.New("a client certificate is required")

	// ErrNoBackup: the hub's History cannot write a backup
	// (Unimplemented).
	ErrNoBackup = errors.New("this hub's ledger cannot be backed up through it")

	// ErrNoHello: the client sent no Hello within HelloTimeout.
	ErrNoHello = errors.New("no Hello")

	// errNodeFull: the node holds MaxSessions; connect turns it into a
	// recorded node_full Rejection.
	errNodeFull = errors.New("node full")
)

// ProtocolError is a client frame the hub cannot take: malformed,
// oversized, or out of place. Transports report theirs as one, so the
// session's end records the reason whatever carried it.
type ProtocolError struct {
	Reason string
	Err    error
}

func (e *ProtocolError) Error() string { return e.Reason }

func (e *ProtocolError) Unwrap() error { return e.Err }

// Rejection codes: Rejected.code on the wire, connect_rejected's code in
// the ledger, the code label of sessionledger_connects_rejected_total.
const (
	// RejectBanned: the user is banned (PermissionDenied).
	RejectBanned = "banned"
	// RejectRateLimited: more connects than UserConnectsPerMinute
	// (ResourceExhausted).
	RejectRateLimited = "rate_limited"
	// RejectNodeFull: the node holds MaxSessions (ResourceExhausted).
	RejectNodeFull = "node_full"
	// RejectResumeRefused: the resume is not allowed (PermissionDenied or
	// FailedPrecondition).
	RejectResumeRefused = "resume_refused"
	// RejectOrigin: a browser page of an origin that is not allowed tried
	// to open a WebSocket (HTTP 403, before any Hello: the event has no
	// user).
	RejectOrigin = "origin_refused"
	// RejectRevoked: the client's token is revoked (PermissionDenied); the
	// refusal names the revocation's event.
	RejectRevoked = "revoked"
	// RejectKicked: a kick with reconnect not allowed (or after a delay)
	// still holds this user and device, or this token (PermissionDenied);
	// the refusal names the kick's event and reason.
	RejectKicked = "kicked"
	// RejectDraining: the node is drained and takes no new sessions
	// (Unavailable): connect to another node.
	RejectDraining = "draining"
)

// OutcomeUnknown is a failed append whose event the cluster's log may still
// record (ledger.ErrOutcomeUnknown): its publish was sent and never
// answered. The caller hears Unavailable with an ErrorInfo detail (reason
// hubapi.ReasonOutcomeUnknown, the message ids under "messages"): it must not
// assume the action did not happen, and should look before repeating it.
// The node logs each message's fate once a later record settles it.
type OutcomeUnknown struct {
	Messages []string // the events' message ids (Nats-Msg-Id, and the record's message UUID)
	Err      error
}

func (o *OutcomeUnknown) Error() string {
	return "outcome unknown: the cluster's log did not answer for message " + strings.Join(o.Messages, ",") +
		" and may still record it; look for it (auditq events --message ID) before repeating the action: " + o.Err.Error()
}

func (o *OutcomeUnknown) Unwrap() error { return o.Err }

// Rejection is a refused connect: banned, over a limit, or a refused resume.
// It is recorded (aggregated) as connect_rejected.
type Rejection struct {
	Code   string // RejectBanned, RejectNodeFull, ...
	Reason string
	Until  time.Time // ban expiry, or the end of a kick's hold, if any
	// EventID is the event behind the refusal (a revocation, a kick), if
	// any.
	EventID ulid.ULID
	// Reconnect advice for the client.
	Reconnect      eventpb.Reconnect
	ReconnectAfter time.Duration
	status         codes.Code
}

func (r *Rejection) Error() string { return "connect rejected: " + r.Code + ": " + r.Reason }

// wire is the Rejection as hub.proto's Rejected: the gRPC status detail,
// and the WebSocket frame before the close.
func (r *Rejection) wire() *hubpb.Rejected {
	det := &hubpb.Rejected{Code: r.Code, Reason: r.Reason, Reconnect: hubpb.Reconnect(r.Reconnect), ReconnectAfterMs: r.ReconnectAfter.Milliseconds()}
	if r.EventID != (ulid.ULID{}) {
		det.EventId = r.EventID.String()
	}
	if !r.Until.IsZero() {
		det.UntilUnixNano = r.Until.UnixNano()
	}
	return det
}

// disconnectCode is the status code a Disconnect ends a gRPC stream with.
func disconnectCode(c Cause) codes.Code {
	switch c {
	case CauseBanned, CauseRevoked:
		return codes.PermissionDenied
	case CauseTokenExpired:
		return codes.Unauthenticated
	case CauseServerShutdown, CauseDrained, CauseLost:
		return codes.Unavailable
	case CauseIdleTimeout:
		return codes.DeadlineExceeded
	case CauseSlowConsumer:
		return codes.ResourceExhausted
	default: // kicked, superseded
		return codes.Aborted
	}
}

// toStatus maps every error the hub returns to a gRPC status: the one place
// domain errors become wire errors.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var d *Disconnect
	if errors.As(err, &d) {
		st, derr := status.New(disconnectCode(d.Cause), d.Reason).WithDetails(d.Wire())
		if derr != nil {
			return status.Error(disconnectCode(d.Cause), d.Reason)
		}
		return st.Err()
	}
	var rj *Rejection
	if errors.As(err, &rj) {
		st := status.New(rj.status, rj.Reason)
		if s2, derr := st.WithDetails(rj.wire()); derr == nil {
			st = s2
		}
		return st.Err()
	}
	var ou *OutcomeUnknown
	if errors.As(err, &ou) {
		st := status.New(codes.Unavailable, ou.Error())
		if s2, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: hubapi.ReasonOutcomeUnknown, Domain: hubapi.ErrorDomain,
			Metadata: map[string]string{"messages": strings.Join(ou.Messages, ",")}}); derr == nil {
			st = s2
		}
		return st.Err()
	}
	var re *RoleError
	if errors.As(err, &re) {
		return status.Error(codes.PermissionDenied, re.Error())
	}
	switch {
	case errors.Is(err, ErrClientCert):
		return status.Error(codes.Unauthenticated, ErrClientCert.Error())
	case errors.Is(err, ErrUnauthenticated):
		return status.Error(codes.Unauthenticated, ErrUnauthenticated.Error())
	case errors.Is(err, ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrNoHello):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, ErrShuttingDown):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ErrLedger), errors.Is(err, ledger.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrNotBanned), errors.Is(err, ErrExceptNotLive):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrNoBackup):
		return status.Error(codes.Unimplemented, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
