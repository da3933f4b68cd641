package audit

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/audit/auditpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/projections"
)

// Server serves an Engine as the gRPC service sessionledger.audit.v1.Audit.
// It does no authentication: the host (hubd) guards every call with its
// admin-token interceptor.
type Server struct {
	auditpb.UnimplementedAuditServer
	eng           *Engine
	progressEvery time.Duration

	quit     chan struct{}
	quitOnce sync.Once
}

var _ auditpb.AuditServer = (*Server)(nil)

// ServerOption configures NewServer.
type ServerOption func(*Server)

// WithProgressEvery sets how often Verify streams progress (default 200ms).
func WithProgressEvery(d time.Duration) ServerOption {
	return func(s *Server) { s.progressEvery = d }
}

// WithVerifierKey sets the checkpoint verifier key the Checkpoint call
// returns beside the checkpoint (hubd's).
func WithVerifierKey(vkey string) ServerOption {
	return func(s *Server) { s.eng.verifierKey = vkey }
}

// NewServer returns a server answering audit queries over store.
func NewServer(store *ledger.Store, opts ...ServerOption) *Server {
	s := &Server{eng: NewEngine(store), progressEvery: 200 * time.Millisecond, quit: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	return s
}

// RegisterServer registers srv on a gRPC server (hubd's).
func RegisterServer(g grpc.ServiceRegistrar, srv *Server) { auditpb.RegisterAuditServer(g, srv) }

// Close ends every Events stream that is following the log, with status
// Unavailable, so that grpc.Server.GracefulStop does not wait for them. Call
// it before stopping the gRPC server. It is idempotent; queries that are not
// following run to their end.
func (s *Server) Close() {
	s.quitOnce.Do(func() { close(s.quit) })
}

// Events implements auditpb.AuditServer.
func (s *Server) Events(req *auditpb.EventsRequest, stream grpc.ServerStreamingServer[auditpb.AuditRecord]) error {
	ctx := stream.Context()
	if req.GetFollow() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-s.quit:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	err := s.eng.Events(ctx, filterFromPB(req.GetFilter()), req.GetFollow(), func(r *ledger.Record) error {
		return stream.Send(recordToPB(r))
	})
	if req.GetFollow() && s.closed() {
		return status.Error(codes.Unavailable, "hub shutting down: follow ended")
	}
	return toStatus(err)
}

func (s *Server) closed() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}

// SessionsAt implements auditpb.AuditServer.
func (s *Server) SessionsAt(req *auditpb.AtRequest, stream grpc.ServerStreamingServer[auditpb.LiveSession]) error {
	ls, err := s.eng.SessionsAt(stream.Context(), fromNanos(req.GetAtUnixNano()),
		projections.Filter{User: req.GetUser(), Device: req.GetDevice(), Node: req.GetNode()})
	if err != nil {
		return toStatus(err)
	}
	for i := range ls {
		if err := stream.Send(&auditpb.LiveSession{Session: sessionToPB(&ls[i].Session), Pending: pendingToPB(ls[i].Pending)}); err != nil {
			return err
		}
	}
	return nil
}

// BansAt implements auditpb.AuditServer.
func (s *Server) BansAt(req *auditpb.AtRequest, stream grpc.ServerStreamingServer[auditpb.Ban]) error {
	bans, err := s.eng.BansAt(stream.Context(), fromNanos(req.GetAtUnixNano()), req.GetUser())
	if err != nil {
		return toStatus(err)
	}
	for i := range bans {
		if err := stream.Send(banToPB(&bans[i])); err != nil {
			return err
		}
	}
	return nil
}

// RevocationsAt implements auditpb.AuditServer.
func (s *Server) RevocationsAt(req *auditpb.AtRequest, stream grpc.ServerStreamingServer[auditpb.Revocation]) error {
	revs, err := s.eng.RevocationsAt(stream.Context(), fromNanos(req.GetAtUnixNano()), req.GetUser())
	if err != nil {
		return toStatus(err)
	}
	for i := range revs {
		if err := stream.Send(revocationToPB(&revs[i])); err != nil {
			return err
		}
	}
	return nil
}

// Timeline implements auditpb.AuditServer.
func (s *Server) Timeline(req *auditpb.TimelineRequest, stream grpc.ServerStreamingServer[auditpb.TimelineEntry]) error {
	q := TimelineQuery{Session: req.GetSession(), User: req.GetUser(), Since: fromNanos(req.GetSinceUnixNano()), Until: fromNanos(req.GetUntilUnixNano())}
	if tz := req.GetTz(); tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return toStatus(invalid("unknown time zone %q", tz))
		}
		q.Loc = loc
	}
	return toStatus(s.eng.Timeline(stream.Context(), q, func(e TimelineEntry) error {
		return stream.Send(timelineToPB(e))
	}))
}

// Replay implements auditpb.AuditServer.
func (s *Server) Replay(req *auditpb.ReplayRequest, stream grpc.ServerStreamingServer[auditpb.ReplayStep]) error {
	q := ReplayQuery{From: fromNanos(req.GetFromUnixNano()), To: fromNanos(req.GetToUnixNano()), User: req.GetUser()}
	return toStatus(s.eng.Replay(stream.Context(), q, func(st Step) error {
		return stream.Send(stepToPB(st))
	}))
}

// Verify implements auditpb.AuditServer. The ledger reports progress from
// inside its scan's read transaction, so progress goes to the client from
// another goroutine, and an update is dropped rather than waited for: a
// client that reads slowly must not hold a read transaction open, which
// would stall hubd's appends whenever bbolt has to grow its memory map.
func (s *Server) Verify(req *auditpb.VerifyRequest, stream grpc.ServerStreamingServer[auditpb.VerifyUpdate]) error {
	q := VerifyQuery{From: req.GetFromSeq(), To: req.GetToSeq(), Since: fromNanos(req.GetSinceUnixNano()), Until: fromNanos(req.GetUntilUnixNano())}
	cps, err := checkpointsFromPB(req.GetCheckpoints())
	if err != nil {
		return toStatus(err)
	}
	q.Checkpoints = cps
	progress := make(chan VerifyProgress, 1)
	sent := make(chan error, 1)
	go func() {
		var err error
		for p := range progress {
			if err == nil {
				err = stream.Send(&auditpb.VerifyUpdate{Update: &auditpb.VerifyUpdate_Progress{
					Progress: &auditpb.VerifyProgress{FromSeq: p.From, ToSeq: p.To, Seq: p.Seq}}})
			}
		}
		sent <- err
	}()
	var last time.Time
	res, err := s.eng.Verify(stream.Context(), q, func(p VerifyProgress) {
		if time.Since(last) < s.progressEvery {
			return
		}
		last = time.Now()
		select {
		case progress <- p:
		default: // the previous update is still on its way
		}
	})
	close(progress)
	sendErr := <-sent
	if err != nil {
		return toStatus(err)
	}
	if sendErr != nil {
		return sendErr
	}
	out := &auditpb.VerifyResult{
		FromSeq: res.From, ToSeq: res.To, Checked: res.Checked, HeadSeq: res.Head.Seq, HeadHash: append([]byte(nil), res.Head.Hash[:]...),
		HeadId: idBytes(res.Head.ID), HeadUnixNano: nanos(res.Head.Time),
	}
	if res.Broken != nil {
		out.BadSeq, out.Reason = res.Broken.Seq, res.Broken.Reason
	}
	verifyWholeToPB(out, res)
	return stream.Send(&auditpb.VerifyUpdate{Update: &auditpb.VerifyUpdate_Result{Result: out}})
}

// Stats implements auditpb.AuditServer. Records skipped as corrupt are
// listed in the response rather than failing it.
func (s *Server) Stats(ctx context.Context, req *auditpb.Filter) (*auditpb.StatsResponse, error) {
	st, err := s.eng.Stats(ctx, filterFromPB(req))
	out := statsToPB(st)
	var ce *CorruptError
	if asCorrupt(err, &ce) && ce.found() > 0 {
		out.Corrupt, out.Missing, out.Strays = ce.Seqs, rangesToPB(ce.Missing), ce.Strays
		err = nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return out, nil
}
