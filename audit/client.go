package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sessionledger/sessionledger/audit/auditpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/checkpoint"
	"github.com/sessionledger/sessionledger/projections"
)

// Client asks a running hubd's Audit service the questions Engine answers
// locally, with the same signatures and errors.
type Client struct {
	conn *grpc.ClientConn
	c    auditpb.AuditClient
	addr string
}

// bearer sends the admin token on every call.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false: hubd's admin listener is loopback by
// default; TLS, when hubd has it, comes from the dial options.
func (bearer) RequireTransportSecurity() bool { return false }

// DefaultConnectTimeout bounds a Client's connection attempt: the TCP
// connect and the HTTP/2 handshake. A call on a hub that cannot be reached
// in that time fails with ErrUnavailable instead of waiting for the
// system's TCP timeout (minutes, for an address that drops packets).
const DefaultConnectTimeout = 5 * time.Second

// WithConnectTimeout sets how long a Client's connection attempt may take
// (default DefaultConnectTimeout).
func WithConnectTimeout(d time.Duration) grpc.DialOption {
	return grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: d})
}

// NewClient returns a client of the Audit service at addr that authenticates
// with token. Without opts it uses a plaintext connection and
// DefaultConnectTimeout. Like grpc.NewClient it does not connect: the first
// call does.
func NewClient(addr, token string, opts ...grpc.DialOption) (*Client, error) {
	base := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), WithConnectTimeout(DefaultConnectTimeout)}
	if token != "" {
		base = append(base, grpc.WithPerRPCCredentials(bearer(token)))
	}
	conn, err := grpc.NewClient(addr, append(base, opts...)...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, c: auditpb.NewAuditClient(conn), addr: addr}, nil
}

// Addr is the address the client talks to.
func (c *Client) Addr() string { return c.addr }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// recvAll reads a server stream to its end, calling fn with each message.
func recvAll[T any](c *Client, s grpc.ServerStreamingClient[T], err error, fn func(*T) error) error {
	if err != nil {
		return fromStatus(err, c.addr)
	}
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fromStatus(err, c.addr)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
}

// Events is Engine.Events over the wire. With follow it runs until ctx ends
// (not an error) or the hub stops.
func (c *Client) Events(ctx context.Context, f Filter, follow bool, fn func(*ledger.Record) error) error {
	if err := f.Validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // a callback error must end the stream
	s, err := c.c.Events(ctx, &auditpb.EventsRequest{Filter: filterToPB(f), Follow: follow})
	err = recvAll(c, s, err, func(m *auditpb.AuditRecord) error { return fn(recordFromPB(m)) })
	if follow && errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// SessionsAt is Engine.SessionsAt over the wire.
func (c *Client) SessionsAt(ctx context.Context, t time.Time, f projections.Filter) ([]LiveSession, error) {
	if t.IsZero() {
		return nil, invalid("--at is required")
	}
	var out []LiveSession
	s, err := c.c.SessionsAt(ctx, &auditpb.AtRequest{AtUnixNano: nanos(t), User: f.User, Device: f.Device, Node: f.Node})
	err = recvAll(c, s, err, func(m *auditpb.LiveSession) error {
		ls := LiveSession{Session: sessionFromPB(m.GetSession())}
		if m.Pending != nil {
			p := pendingFromPB(m.Pending)
			ls.Pending = &p
		}
		out = append(out, ls)
		return nil
	})
	return out, err
}

// BansAt is Engine.BansAt over the wire.
func (c *Client) BansAt(ctx context.Context, t time.Time, user string) ([]projections.Ban, error) {
	if t.IsZero() {
		return nil, invalid("--at is required")
	}
	var out []projections.Ban
	s, err := c.c.BansAt(ctx, &auditpb.AtRequest{AtUnixNano: nanos(t), User: user})
	err = recvAll(c, s, err, func(m *auditpb.Ban) error {
		out = append(out, banFromPB(m))
		return nil
	})
	return out, err
}

// RevocationsAt is Engine.RevocationsAt over the wire.
func (c *Client) RevocationsAt(ctx context.Context, t time.Time, user string) ([]projections.Revocation, error) {
	if t.IsZero() {
		return nil, invalid("--at is required")
	}
	var out []projections.Revocation
	s, err := c.c.RevocationsAt(ctx, &auditpb.AtRequest{AtUnixNano: nanos(t), User: user})
	err = recvAll(c, s, err, func(m *auditpb.Revocation) error {
		out = append(out, revocationFromPB(m))
		return nil
	})
	return out, err
}

// Timeline is Engine.Timeline over the wire.
func (c *Client) Timeline(ctx context.Context, q TimelineQuery, fn func(TimelineEntry) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := &auditpb.TimelineRequest{Session: q.Session, User: q.User, SinceUnixNano: nanos(q.Since), UntilUnixNano: nanos(q.Until)}
	if q.Loc != nil && q.Loc != time.UTC {
		req.Tz = q.Loc.String()
	}
	s, err := c.c.Timeline(ctx, req)
	return recvAll(c, s, err, func(m *auditpb.TimelineEntry) error { return fn(timelineFromPB(m)) })
}

// Replay is Engine.Replay over the wire.
func (c *Client) Replay(ctx context.Context, q ReplayQuery, fn func(Step) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := c.c.Replay(ctx, &auditpb.ReplayRequest{FromUnixNano: nanos(q.From), ToUnixNano: nanos(q.To), User: q.User})
	return recvAll(c, s, err, func(m *auditpb.ReplayStep) error { return fn(stepFromPB(m)) })
}

// Verify is Engine.Verify over the wire; the hub sends progress every
// 200ms or so (a hub older than VerifyProgress sends only the seq).
func (c *Client) Verify(ctx context.Context, q VerifyQuery, progress func(VerifyProgress)) (VerifyResult, error) {
	var res VerifyResult
	got := false
	req := &auditpb.VerifyRequest{FromSeq: q.From, ToSeq: q.To, SinceUnixNano: nanos(q.Since), UntilUnixNano: nanos(q.Until)}
	for _, cp := range q.Checkpoints {
		// The hub compares what a checkpoint says with the log; its
		// signature is the caller's to check, so the text is enough.
		req.Checkpoints = append(req.Checkpoints, cp.Text())
	}
	s, err := c.c.Verify(ctx, req)
	err = recvAll(c, s, err, func(m *auditpb.VerifyUpdate) error {
		if r := m.GetResult(); r != nil {
			got = true
			res = VerifyResult{From: r.GetFromSeq(), To: r.GetToSeq(), Checked: r.GetChecked()}
			res.Head.Seq, res.Head.ID, res.Head.Time = r.GetHeadSeq(), toID(r.GetHeadId()), fromNanos(r.GetHeadUnixNano())
			copy(res.Head.Hash[:], r.GetHeadHash())
			if r.GetBadSeq() != 0 {
				res.Broken = &ledger.ChainError{Seq: r.GetBadSeq(), Reason: r.GetReason()}
			}
			verifyWholeFromPB(r, &res)
			return nil
		}
		if progress == nil {
			return nil
		}
		if p := m.GetProgress(); p != nil {
			progress(VerifyProgress{From: p.GetFromSeq(), To: p.GetToSeq(), Seq: p.GetSeq()})
		} else {
			progress(VerifyProgress{Seq: m.GetProgressSeq()})
		}
		return nil
	})
	if err == nil && !got {
		err = errors.New("verify: the hub ended the stream without a result")
	}
	return res, err
}

// Stats is Engine.Stats over the wire.
func (c *Client) Stats(ctx context.Context, f Filter) (Stats, error) {
	if err := f.Validate(); err != nil {
		return Stats{}, err
	}
	r, err := c.c.Stats(ctx, filterToPB(f))
	if err != nil {
		return Stats{}, fromStatus(err, c.addr)
	}
	st := statsFromPB(r)
	if len(r.GetCorrupt()) > 0 || len(r.GetMissing()) > 0 || len(r.GetStrays()) > 0 {
		return st, &CorruptError{Seqs: r.GetCorrupt(), Missing: rangesFromPB(r.GetMissing()), Strays: r.GetStrays(), Err: ledger.ErrCorrupt}
	}
	return st, nil
}

// Checkpoint is Engine.Checkpoint over the wire, with the hub's verifier
// key.
func (c *Client) Checkpoint(ctx context.Context) (SignedCheckpoint, error) {
	r, err := c.c.Checkpoint(ctx, &auditpb.CheckpointRequest{})
	if err != nil {
		return SignedCheckpoint{}, fromStatus(err, c.addr)
	}
	cp, err := checkpoint.Parse(r.GetNote())
	if err != nil {
		return SignedCheckpoint{}, fmt.Errorf("hub at %s: %w", c.addr, err)
	}
	return SignedCheckpoint{Checkpoint: cp, Note: r.GetNote(), VerifierKey: r.GetVerifierKey()}, nil
}

// Prove is Engine.Prove over the wire.
func (c *Client) Prove(ctx context.Context, q ProveQuery) (*Bundle, error) {
	req := &auditpb.ProveRequest{Seq: q.Seq, Checkpoint: q.Checkpoint}
	if q.EventID != (ulid.ULID{}) {
		req.EventId = q.EventID[:]
	}
	r, err := c.c.Prove(ctx, req)
	if err != nil {
		return nil, fromStatus(err, c.addr)
	}
	return ParseBundle(r.GetBundle())
}

// ConsistencyProof is Engine.ConsistencyProof over the wire.
func (c *Client) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) (Consistency, error) {
	r, err := c.c.ConsistencyProof(ctx, &auditpb.ConsistencyRequest{OldSize: oldSize, NewSize: newSize})
	if err != nil {
		return Consistency{}, fromStatus(err, c.addr)
	}
	out := Consistency{Old: ledger.TreeHead{Size: oldSize, Root: hashFromPB(r.GetOldRoot())}, New: ledger.TreeHead{Size: newSize, Root: hashFromPB(r.GetNewRoot())}}
	for _, h := range r.GetProof() {
		out.Proof = append(out.Proof, hashFromPB(h))
	}
	return out, nil
}
