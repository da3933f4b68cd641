package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
	// ErrSecretFileMode: a secret file (admin tokens, resume key, JWT
	// secret) that users other than its owner may read or write.
	ErrSecretFileMode = errors.New("secret file open to other users")

	// errNodeFull: the node holds MaxSessions; connect turns it into a
	// recorded node_full Rejection.
	errNodeFull = errors.New("node full")
	// errStopScan ends a ledger scan early; never returned.
	errStopScan = errors.New("stop scan")
)

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
)

// Rejection is a refused connect: banned, over a limit, or a refused resume.
// It is recorded (aggregated) as connect_rejected.
type Rejection struct {
	Code   string // RejectBanned, RejectNodeFull, ...
	Reason string
	Until  time.Time // ban expiry, if any
	// Reconnect advice for the client.
	Reconnect      hubpb.Reconnect
	ReconnectAfter time.Duration
	status         codes.Code
}

func (r *Rejection) Error() string { return "connect rejected: " + r.Code + ": " + r.Reason }

// Disconnect is a server-initiated end of a session: what the client is told
// in the Disconnect frame and the final status.
type Disconnect struct {
	Code           hubpb.DisconnectCode
	Reason         string
	Reconnect      hubpb.Reconnect
	ReconnectAfter time.Duration
	EventID        string
	Actor          string
	SupersededBy   string
}

func (d *Disconnect) Error() string {
	return fmt.Sprintf("disconnected: %s: %s", d.Code, d.Reason)
}

// Frame is the Disconnect as sent on the stream.
func (d *Disconnect) Frame() *hubpb.Disconnect {
	return &hubpb.Disconnect{
		Code: d.Code, Reason: d.Reason, Reconnect: d.Reconnect, ReconnectAfterMs: d.ReconnectAfter.Milliseconds(),
		EventId: d.EventID, Actor: d.Actor, SupersededBy: d.SupersededBy,
	}
}

// disconnectCode is the status code a Disconnect ends the stream with.
func disconnectCode(c hubpb.DisconnectCode) codes.Code {
	switch c {
	case hubpb.DisconnectCode_DISCONNECT_CODE_BANNED:
		return codes.PermissionDenied
	case hubpb.DisconnectCode_DISCONNECT_CODE_SERVER_SHUTDOWN:
		return codes.Unavailable
	case hubpb.DisconnectCode_DISCONNECT_CODE_IDLE_TIMEOUT:
		return codes.DeadlineExceeded
	case hubpb.DisconnectCode_DISCONNECT_CODE_SLOW_CONSUMER:
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
		st, derr := status.New(disconnectCode(d.Code), d.Reason).WithDetails(d.Frame())
		if derr != nil {
			return status.Error(disconnectCode(d.Code), d.Reason)
		}
		return st.Err()
	}
	var rj *Rejection
	if errors.As(err, &rj) {
		st := status.New(rj.status, rj.Reason)
		det := &hubpb.Rejected{Code: rj.Code, Reason: rj.Reason, Reconnect: rj.Reconnect, ReconnectAfterMs: rj.ReconnectAfter.Milliseconds()}
		if !rj.Until.IsZero() {
			det.UntilUnixNano = rj.Until.UnixNano()
		}
		if s2, derr := st.WithDetails(det); derr == nil {
			st = s2
		}
		return st.Err()
	}
	switch {
	case errors.Is(err, ErrUnauthenticated):
		return status.Error(codes.Unauthenticated, ErrUnauthenticated.Error())
	case errors.Is(err, ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrShuttingDown):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ErrLedger), errors.Is(err, ledger.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrNotBanned):
		return status.Error(codes.FailedPrecondition, err.Error())
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

// Wire and ledger enum conversions.

func codeOfCause(c eventpb.DisconnectCause) hubpb.DisconnectCode {
	switch c {
	case eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED:
		return hubpb.DisconnectCode_DISCONNECT_CODE_KICKED
	case eventpb.DisconnectCause_DISCONNECT_CAUSE_BANNED:
		return hubpb.DisconnectCode_DISCONNECT_CODE_BANNED
	case eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED:
		return hubpb.DisconnectCode_DISCONNECT_CODE_SUPERSEDED
	case eventpb.DisconnectCause_DISCONNECT_CAUSE_IDLE_TIMEOUT:
		return hubpb.DisconnectCode_DISCONNECT_CODE_IDLE_TIMEOUT
	case eventpb.DisconnectCause_DISCONNECT_CAUSE_SERVER_SHUTDOWN:
		return hubpb.DisconnectCode_DISCONNECT_CODE_SERVER_SHUTDOWN
	case eventpb.DisconnectCause_DISCONNECT_CAUSE_SLOW_CONSUMER:
		return hubpb.DisconnectCode_DISCONNECT_CODE_SLOW_CONSUMER
	}
	return hubpb.DisconnectCode_DISCONNECT_CODE_UNSPECIFIED
}

func causeOfCode(c hubpb.DisconnectCode) eventpb.DisconnectCause {
	switch c {
	case hubpb.DisconnectCode_DISCONNECT_CODE_KICKED:
		return eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED
	case hubpb.DisconnectCode_DISCONNECT_CODE_BANNED:
		return eventpb.DisconnectCause_DISCONNECT_CAUSE_BANNED
	case hubpb.DisconnectCode_DISCONNECT_CODE_SUPERSEDED:
		return eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED
	case hubpb.DisconnectCode_DISCONNECT_CODE_IDLE_TIMEOUT:
		return eventpb.DisconnectCause_DISCONNECT_CAUSE_IDLE_TIMEOUT
	case hubpb.DisconnectCode_DISCONNECT_CODE_SERVER_SHUTDOWN:
		return eventpb.DisconnectCause_DISCONNECT_CAUSE_SERVER_SHUTDOWN
	case hubpb.DisconnectCode_DISCONNECT_CODE_SLOW_CONSUMER:
		return eventpb.DisconnectCause_DISCONNECT_CAUSE_SLOW_CONSUMER
	}
	return eventpb.DisconnectCause_DISCONNECT_CAUSE_UNSPECIFIED
}

func wireReconnect(r eventpb.Reconnect) hubpb.Reconnect   { return hubpb.Reconnect(r) }
func ledgerReconnect(r hubpb.Reconnect) eventpb.Reconnect { return eventpb.Reconnect(r) }
