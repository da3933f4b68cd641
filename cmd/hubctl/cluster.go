package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/termtext"
)

// exitDiverged is cluster's exit code when a node's chain differs from
// the others' at a seq they all hold.
const exitDiverged = 3

func newCluster(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "cluster",
		Short: "List the cluster's nodes and check that their chains agree",
		Long: `cluster asks one node for the cluster's nodes, as each last reported itself: its
address, the head of its ledger, what its projections applied, how far it is behind
the cluster's log, and its sessions. It compares the nodes' chain hashes at the
newest seq they all hold: a node whose hash there is not the one most nodes have
is flagged DIFFERS (a tampered or diverged replica), and hubctl exits with 3.
On a single node it shows that node.`,
		Example: `  hubctl cluster --addr 127.0.0.1:7070
  hubctl cluster --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			admin, ctx, done, err := g.admin()
			if err != nil {
				return err
			}
			defer done()
			res, err := admin.ClusterStatus(ctx, &hubpb.ClusterStatusRequest{})
			if err != nil {
				return callError("cluster", err)
			}
			out := cmd.OutOrStdout()
			diverged := false
			for _, n := range res.GetNodes() {
				diverged = diverged || n.GetDiffers()
			}
			if asJSON {
				b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(res)
				if err != nil {
					return err
				}
				fmt.Fprintln(out, string(compactJSON(b)))
			} else {
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "NODE\tADDRESS\tHEAD\tAPPLIED\tLAG\tSESSIONS\tSEEN\tHASH AT %d\tCHAIN\n", res.GetComparedSeq())
				for _, n := range res.GetNodes() {
					chain := "agrees"
					switch {
					case n.GetDiffers():
						chain = "DIFFERS"
					case res.GetComparedSeq() == 0:
						chain = "-"
					}
					seen := time.Since(time.Unix(0, n.GetUpdatedUnixNano())).Round(time.Second).String() + " ago"
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", termtext.Cell(n.GetNode()), termtext.Cell(n.GetAddr()), n.GetHeadSeq(), n.GetAppliedSeq(),
						n.GetLag(), n.GetSessions(), seen, termtext.Cell(short(n.GetHashAtCompared())), chain)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				switch {
				case !res.GetClustered():
					fmt.Fprintln(out, "not a cluster: one node")
				case diverged:
					fmt.Fprintf(out, "%d node(s); chains DIFFER at seq %d\n", len(res.GetNodes()), res.GetComparedSeq())
				case res.GetComparedSeq() == 0:
					fmt.Fprintf(out, "%d node(s); no seq all of them reported yet\n", len(res.GetNodes()))
				default:
					fmt.Fprintf(out, "%d node(s); chains agree at seq %d\n", len(res.GetNodes()), res.GetComparedSeq())
				}
			}
			if diverged {
				return &exitError{code: exitDiverged, err: fmt.Errorf("a node's chain differs from the others' at seq %d", res.GetComparedSeq())}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "the reply as one JSON object")
	return c
}

// short shortens a hash for a table.
func short(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}
