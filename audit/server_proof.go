package audit

import (
	"context"

	"github.com/sessionledger/sessionledger/audit/auditpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/checkpoint"
)

// Checkpoint implements auditpb.AuditServer.
func (s *Server) Checkpoint(ctx context.Context, _ *auditpb.CheckpointRequest) (*auditpb.CheckpointResponse, error) {
	sc, err := s.eng.Checkpoint(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &auditpb.CheckpointResponse{Note: sc.Note, VerifierKey: sc.VerifierKey}, nil
}

// Prove implements auditpb.AuditServer.
func (s *Server) Prove(ctx context.Context, req *auditpb.ProveRequest) (*auditpb.ProveResponse, error) {
	q := ProveQuery{Seq: req.GetSeq(), Checkpoint: req.GetCheckpoint()}
	if id := req.GetEventId(); len(id) > 0 {
		if len(id) != len(q.EventID) {
			return nil, toStatus(invalid("event id is %d bytes; want 16", len(id)))
		}
		q.EventID = toID(id)
	}
	if len(q.Checkpoint) == 0 {
		q.Checkpoint = nil
	}
	b, err := s.eng.Prove(ctx, q)
	if err != nil {
		return nil, toStatus(err)
	}
	out, err := b.Marshal()
	if err != nil {
		return nil, toStatus(err)
	}
	return &auditpb.ProveResponse{Bundle: out}, nil
}

// ConsistencyProof implements auditpb.AuditServer.
func (s *Server) ConsistencyProof(ctx context.Context, req *auditpb.ConsistencyRequest) (*auditpb.ConsistencyResponse, error) {
	c, err := s.eng.ConsistencyProof(ctx, req.GetOldSize(), req.GetNewSize())
	if err != nil {
		return nil, toStatus(err)
	}
	return &auditpb.ConsistencyResponse{OldRoot: c.Old.Root[:], NewRoot: c.New.Root[:], Proof: hashesToPB(c.Proof)}, nil
}

func hashesToPB(hs []ledger.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

func hashFromPB(b []byte) ledger.Hash {
	var h ledger.Hash
	copy(h[:], b)
	return h
}

// verifyResultToPB is the whole-log part of a VerifyResult.
func verifyWholeToPB(out *auditpb.VerifyResult, res VerifyResult) {
	out.HeadRoot = append([]byte(nil), res.Head.Root[:]...)
	if !res.Whole {
		return
	}
	out.Whole = true
	out.StoredTree = res.StoredTree
	out.TreeRoot = append([]byte(nil), res.Root[:]...)
	if d := res.TreeDamage; d != nil {
		out.TreeBadSeq, out.TreeReason = d.Seq, d.Reason
	}
	for _, f := range res.Findings {
		out.Findings = append(out.Findings, &auditpb.Finding{Where: f.Where, Seq: f.Seq, Problem: f.Problem})
	}
	for _, c := range res.Checkpoints {
		out.Checkpoints = append(out.Checkpoints, &auditpb.CheckpointResult{Origin: c.Checkpoint.Origin, Size: c.Checkpoint.Size,
			Root: append([]byte(nil), c.Checkpoint.Root[:]...), Ok: c.OK, Problem: c.Problem})
	}
}

func verifyWholeFromPB(r *auditpb.VerifyResult, res *VerifyResult) {
	res.Head.Root = hashFromPB(r.GetHeadRoot())
	if !r.GetWhole() {
		return
	}
	res.Whole = true
	res.StoredTree = r.GetStoredTree()
	res.Root = hashFromPB(r.GetTreeRoot())
	if r.GetTreeBadSeq() != 0 {
		res.TreeDamage = &ledger.ChainError{Seq: r.GetTreeBadSeq(), Reason: r.GetTreeReason()}
	}
	for _, f := range r.GetFindings() {
		res.Findings = append(res.Findings, ledger.Finding{Where: f.GetWhere(), Seq: f.GetSeq(), Problem: f.GetProblem()})
	}
	for _, c := range r.GetCheckpoints() {
		res.Checkpoints = append(res.Checkpoints, CheckpointResult{
			Checkpoint: checkpoint.Checkpoint{Origin: c.GetOrigin(), TreeHead: ledger.TreeHead{Size: c.GetSize(), Root: hashFromPB(c.GetRoot())}},
			OK:         c.GetOk(), Problem: c.GetProblem()})
	}
}

func checkpointsFromPB(texts [][]byte) ([]checkpoint.Checkpoint, error) {
	var out []checkpoint.Checkpoint
	for i, n := range texts {
		c, err := checkpoint.ParseText(n)
		if err != nil {
			return nil, invalid("checkpoint %d: %v", i+1, err)
		}
		out = append(out, c)
	}
	return out, nil
}
