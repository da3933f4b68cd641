package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/audit/auditpb"
	"github.com/sessionledger/sessionledger/ledger"
)

// The one place where audit and ledger errors become gRPC statuses
// (toStatus, on the server) and back (fromStatus, in the client), so that
// errors.Is works the same on a Client as on an Engine.

func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var ce *CorruptError
	switch {
	case errors.As(err, &ce):
		st, derr := status.New(codes.DataLoss, err.Error()).WithDetails(&auditpb.Corrupt{Seqs: ce.Seqs, Missing: rangesToPB(ce.Missing), Strays: ce.Strays})
		if derr != nil {
			return status.Error(codes.DataLoss, err.Error())
		}
		return st.Err()
	case errors.Is(err, ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrNoSuchSession), errors.Is(err, ledger.ErrNotFound), errors.Is(err, ErrNoCheckpoint):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrCheckFailed):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ledger.ErrNoTree):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ledger.ErrCorrupt):
		return status.Error(codes.DataLoss, err.Error())
	case errors.Is(err, ledger.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

// remoteError is an error the hub reported: its message as the hub wrote
// it, matching the sentinel it stands for.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

func fromStatus(err error, addr string) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	switch st.Code() {
	case codes.OK:
		return nil
	case codes.InvalidArgument:
		return &remoteError{msg, ErrInvalid}
	case codes.NotFound:
		return &remoteError{msg, ErrNoSuchSession}
	case codes.DataLoss:
		for _, d := range st.Details() {
			if c, ok := d.(*auditpb.Corrupt); ok {
				return &CorruptError{Seqs: c.GetSeqs(), Missing: rangesFromPB(c.GetMissing()), Strays: c.GetStrays(), Err: ledger.ErrCorrupt}
			}
		}
		return &remoteError{msg, ledger.ErrCorrupt}
	case codes.PermissionDenied:
		// The token is known but its role does not allow the call.
		return &remoteError{fmt.Sprintf("hub at %s refused the call: %s", addr, msg), ErrUnauthenticated}
	case codes.Unauthenticated:
		if strings.Contains(msg, "client certificate") {
			return &remoteError{fmt.Sprintf("hub at %s wants a client certificate (give --cert and --cert-key)", addr), ErrUnauthenticated}
		}
		return &remoteError{fmt.Sprintf("hub at %s refused the admin token (give --token, set HUBD_ADMIN_TOKEN, or point --data at hubd's data folder)", addr), ErrUnauthenticated}
	case codes.Unavailable:
		if strings.Contains(msg, "server preface") {
			// A TLS server closes a plaintext handshake without a word.
			msg += " (does the hub serve TLS? then give --tls, and --ca if its certificate is not one the system trusts)"
		}
		return &remoteError{fmt.Sprintf("cannot reach hubd at %s: %s", addr, msg), ErrUnavailable}
	case codes.Unimplemented:
		return &remoteError{fmt.Sprintf("the server at %s has no audit service (%s)", addr, msg), ErrUnavailable}
	case codes.Canceled:
		return context.Canceled
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	default:
		return fmt.Errorf("hub at %s: %s: %s", addr, st.Code(), msg)
	}
}
