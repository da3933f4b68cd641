package cluster_test

import (
	"slices"
	"testing"

	"github.com/sessionledger/sessionledger/ledger/cluster"
)

// TestCompareFlagsTheOddReplica: at the newest seq every node reported a
// hash for, a node whose hash is not the majority's is flagged; two nodes
// that disagree are both flagged (the log alone cannot say which is
// right); nodes too far apart share no seq and nothing is claimed.
func TestCompareFlagsTheOddReplica(t *testing.T) {
	cp := func(seq uint64, h string) cluster.Checkpoint { return cluster.Checkpoint{Seq: seq, Hash: h} }
	a := cluster.NodeState{Node: "a", HeadSeq: 130, HeadHash: "a130", Checkpoints: []cluster.Checkpoint{cp(128, "x128"), cp(64, "x64")}}
	b := cluster.NodeState{Node: "b", HeadSeq: 129, HeadHash: "b129", Checkpoints: []cluster.Checkpoint{cp(128, "x128"), cp(64, "x64")}}
	c := cluster.NodeState{Node: "c", HeadSeq: 128, HeadHash: "EVIL", Checkpoints: []cluster.Checkpoint{cp(128, "EVIL"), cp(64, "x64")}}
	for _, tc := range []struct {
		name   string
		nodes  []cluster.NodeState
		at     uint64
		differ []string
	}{
		{"all agree", []cluster.NodeState{a, b}, 128, nil},
		{"one tampered", []cluster.NodeState{a, b, c}, 128, []string{"c"}},
		{"tampered node asked first", []cluster.NodeState{c, a, b}, 128, []string{"c"}},
		{"two disagree", []cluster.NodeState{a, c}, 128, []string{"a", "c"}},
		{"equal heads", []cluster.NodeState{{Node: "a", HeadSeq: 5, HeadHash: "h"}, {Node: "b", HeadSeq: 5, HeadHash: "h"}}, 5, nil},
		{"nothing shared", []cluster.NodeState{{Node: "a", HeadSeq: 5, HeadHash: "h"}, {Node: "b", HeadSeq: 6, HeadHash: "i"}}, 0, nil},
	} {
		at, _, differ := cluster.Compare(tc.nodes)
		slices.Sort(differ)
		if at != tc.at || !slices.Equal(differ, tc.differ) {
			t.Errorf("%s: at %d, differ %v; want %d, %v", tc.name, at, differ, tc.at, tc.differ)
		}
	}
}
