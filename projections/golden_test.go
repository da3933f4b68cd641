package projections_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

var update = flag.Bool("update", false, "write the golden files that are missing (testdata/golden-log.bin, testdata/snapshot-v<SnapshotVersion>.golden)")

// goldenLog is a fixed log written once from the property generator, so
// that a change to the generator does not change the golden snapshots.
const goldenLog = "testdata/golden-log.bin"

func goldenSnapshots() string {
	return fmt.Sprintf("testdata/snapshot-v%d.golden", projections.SnapshotVersion)
}

// TestSnapshotGolden replays the golden log and compares the SHA-256 of the
// snapshot after every 25th record with testdata/snapshot-v<N>.golden, N
// being SnapshotVersion. Any change to what the reducer makes of a log, or
// to how a state is encoded, changes them, and stored snapshots of version
// N would then be wrong: bump SnapshotVersion (the Runner then rebuilds from
// the log) and run
//
//	go test ./projections -run TestSnapshotGolden -update
//
// which writes the new version's file and removes the old one. -update
// never rewrites the file of an existing version: that is the point.
func TestSnapshotGolden(t *testing.T) {
	recs := readGoldenLog(t)
	var got bytes.Buffer
	st := projections.New()
	for i, r := range recs {
		st.Apply(r)
		if (i+1)%25 == 0 || i == len(recs)-1 {
			fmt.Fprintf(&got, "%d %x\n", r.Seq, sha256.Sum256(mustMarshal(t, st)))
		}
	}
	path := goldenSnapshots()
	want, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && *update {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		old, _ := filepath.Glob("testdata/snapshot-v*.golden")
		for _, o := range old {
			if o != path {
				_ = os.Remove(o)
			}
		}
		t.Logf("wrote %s", path)
		return
	}
	if err != nil {
		t.Fatalf("%v: a new SnapshotVersion needs its golden file: go test ./projections -run TestSnapshotGolden -update", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("the snapshots of the golden log differ from %s: the reducer's meaning or the snapshot's layout changed, "+
			"so stored snapshots of version %d no longer mean what they did. Bump SnapshotVersion and run "+
			"go test ./projections -run TestSnapshotGolden -update", path, projections.SnapshotVersion)
	}
}

// readGoldenLog reads the golden log (uvarint-length-prefixed
// eventpb.Record encodings), writing it first under -update if missing.
func readGoldenLog(t *testing.T) []*ledger.Record {
	t.Helper()
	b, err := os.ReadFile(goldenLog)
	if errors.Is(err, fs.ErrNotExist) && *update {
		b = writeGoldenLog(t)
	} else if err != nil {
		t.Fatal(err)
	}
	var recs []*ledger.Record
	for len(b) > 0 {
		m, n := protowire.ConsumeBytes(b)
		if n < 0 {
			t.Fatalf("%s: damaged after %d records", goldenLog, len(recs))
		}
		b = b[n:]
		var pb eventpb.Record
		if err := proto.Unmarshal(m, &pb); err != nil {
			t.Fatal(err)
		}
		r := &ledger.Record{Seq: pb.GetSeq(), Time: time.Unix(0, pb.GetTimeUnixNano()).UTC(), Topic: pb.GetTopic(), Event: pb.GetEvent(), Payload: pb.GetPayload()}
		copy(r.ID[:], pb.GetId())
		recs = append(recs, r)
	}
	return recs
}

func writeGoldenLog(t *testing.T) []byte {
	g := newGen(20261101, projections.Policy{MaxPerUser: 2, OnePerDevice: true})
	var out []byte
	for i := 0; i < 1000; i++ {
		r := g.next()
		pb := &eventpb.Record{Seq: r.Seq, Id: r.ID[:], TimeUnixNano: r.Time.UnixNano(), Topic: r.Topic}
		if r.Event != nil {
			pb.Body = &eventpb.Record_Event{Event: r.Event}
		} else {
			pb.Body = &eventpb.Record_Payload{Payload: r.Payload}
		}
		m, err := proto.MarshalOptions{Deterministic: true}.Marshal(pb)
		if err != nil {
			t.Fatal(err)
		}
		out = protowire.AppendBytes(out, m)
	}
	if err := os.WriteFile(goldenLog, out, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", goldenLog)
	return out
}
