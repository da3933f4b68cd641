package main

// The summary table and its arithmetic.

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// pct returns the p-th percentile of ds in milliseconds.
func pct(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	i = min(max(i-1, 0), len(s)-1)
	return float64(s[i].Microseconds()) / 1000
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func roundAll(fs []float64) []float64 {
	out := make([]float64, len(fs))
	for i, f := range fs {
		out[i] = float64(int(f*1000)) / 1000
	}
	return out
}

func (b *bench) summary(w io.Writer) {
	r := &b.res
	limit := fmt.Sprintf("fd limit %d", r.Machine.FDLimit)
	if r.Machine.FDLimitBefore < r.Machine.FDLimit {
		limit = fmt.Sprintf("fd limit raised from %d to %d", r.Machine.FDLimitBefore, r.Machine.FDLimit)
	}
	cr := r.Cluster
	where, durable, hubd := "hubd and clients on one machine", "every connect durable", "hubd"
	if cr != nil {
		where = fmt.Sprintf("%d hubd nodes and clients on one machine", cr.Nodes)
		if !cr.Started {
			where = fmt.Sprintf("%d running hubd nodes (--addrs)", cr.Nodes)
		}
		durable, hubd = "every connect acknowledged by a quorum of the stream", "the nodes'"
	}
	fmt.Fprintf(w, "\nhubbench: %d sessions over %d %s connections, %s (%d CPUs, %s, %s, %s)\n",
		r.Sessions, r.Connections, map[string]string{"grpc": "gRPC", "ws": "WebSocket"}[r.Transport], where, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, limit)
	if cr != nil {
		fmt.Fprintf(w, "  cluster     %s; sessions per node %v (session i starts at node i%%%d, on a connection of its own)\n", b.nodeList(), cr.SessionsPerNode, cr.Nodes)
		if cr.Started {
			fmt.Fprintf(w, "              embedded NATS, stream replicas %d, --cluster-heartbeat %s, --lost-after %s\n",
				cr.Replicas, b.o.clusterHeartbeat, b.o.effectiveLostAfter())
		}
	}
	fmt.Fprintf(w, "  connect     %.0f sessions/s (%d in %.2fs), %s\n", r.Connect.PerSecond, r.Sessions, r.Connect.Seconds, durable)
	if r.Memory.RSS > 0 {
		fmt.Fprintf(w, "  memory      per idle session: %.1f KB RSS (%.1f KB anonymous; the rest is the ledger's mmap), %.1f KB Go heap, %.1f KB stacks, %.2f goroutines (%s RSS %.0f MiB)\n",
			r.Memory.RSSPerSession/1024, r.Memory.AnonPerSession/1024, r.Memory.HeapPerSession/1024, r.Memory.StackPerSession/1024, r.Memory.GoroutinesPerSs, hubd, mib(r.Memory.RSS))
	} else {
		fmt.Fprintf(w, "  memory      not measured (hubbench did not start the nodes)\n")
	}
	fmt.Fprintf(w, "  baseline    one durable ledger append: p50 %.2f ms, p99 %.2f ms (in hubbench, same disk, same run)\n", r.Baseline.AppendP50, r.Baseline.AppendP99)
	if r.Baseline.NotifyN > 0 {
		via := "hubd"
		if cr != nil {
			via = b.nodes[0].label() + " (one replicated append, applied)"
		}
		fmt.Fprintf(w, "              Admin.Notify to a user with no sessions through %s: p50 %.2f ms, p99 %.2f ms over %d calls\n",
			via, r.Baseline.NotifyP50, r.Baseline.NotifyP99, r.Baseline.NotifyN)
	}
	if r.Kick.N > 0 {
		fmt.Fprintf(w, "  kick        Kick call -> client sees its stream end: p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d kicks; %d-%d others live (median %d: kicked clients resume meanwhile)\n",
			r.Kick.EndP50, r.Kick.EndP99, r.Kick.EndMax, r.Kick.N, r.Kick.LiveMin, r.Sessions-1, r.Kick.LiveMedian)
		fmt.Fprintf(w, "              (Kick call returns p50 %.2f ms, p99 %.2f ms; Disconnect frame p50 %.2f ms, p99 %.2f ms; %d timeouts, counted as %s; end p50 = %.1fx the baseline append, which a kick needs two of",
			r.Kick.CallP50, r.Kick.CallP99, r.Kick.FrameP50, r.Kick.FrameP99, r.Kick.Timeouts, kickTimeout, r.Kick.EndP50/max(r.Baseline.AppendP50, 0.001))
		if r.Baseline.NotifyN > 0 {
			fmt.Fprintf(w, ", %.1fx the notify baseline", r.Kick.EndP50/max(r.Baseline.NotifyP50, 0.001))
		}
		fmt.Fprintf(w, ")\n")
		switch {
		case r.Kick.Commits > 0 && cr != nil:
			fmt.Fprintf(w, "              the nodes' replica commits meanwhile: p50 %.2f ms, p99 %.2f ms over %d, all nodes together (fdatasyncs included)\n",
				r.Kick.CommitP50, r.Kick.CommitP99, r.Kick.Commits)
		case r.Kick.Commits > 0:
			fmt.Fprintf(w, "              hubd's ledger commits meanwhile: p50 %.2f ms, p99 %.2f ms over %d (fdatasyncs included; a kick waits for two, and for one in flight before each)\n",
				r.Kick.CommitP50, r.Kick.CommitP99, r.Kick.Commits)
		}
		if cr != nil {
			fmt.Fprintf(w, "              cross-node: every kick through %s to a session on another node (kicked per node %v)\n", b.nodes[0].label(), cr.KicksPerNode)
		}
		if r.Kick.Durable {
			fmt.Fprintf(w, "              every kick read back from hubd's ledger at the seq its reply gave, with its session's end caused by it\n")
		}
	}
	if r.Fanout.Rounds > 0 {
		fmt.Fprintf(w, "  fan-out     %.0f deliveries/s (median of %d notify-all rounds to all %d sessions)\n",
			r.Fanout.PerSecondMed, r.Fanout.Rounds, r.Fanout.Sessions)
	}
	if r.Storm.Skipped != "" {
		fmt.Fprintf(w, "  storm       skipped (%s)\n", r.Storm.Skipped)
	}
	if r.Storm.Sessions > 0 {
		fmt.Fprintf(w, "  storm       all %d resumed %.2fs after SIGTERM (shutdown %.2fs, restart %.2fs); advice %.0f-%.0f ms, client waits %.0f-%.0f ms; resumes p10/p50/p90 %.2f/%.2f/%.2fs; per second %v; %d failed attempts\n",
			r.Storm.Resumed, r.Storm.AllResumedSec, r.Storm.ShutdownSec, r.Storm.RestartSec, r.Storm.AdviceMinMs, r.Storm.AdviceMaxMs,
			r.Storm.WaitMinMs, r.Storm.WaitMaxMs, r.Storm.ResumeP10, r.Storm.ResumeP50, r.Storm.ResumeP90, r.Storm.PerSecond, r.Storm.Retries)
	}
	if cr != nil && cr.Kill != nil {
		k := cr.Kill
		met := "met"
		if k.AllLostSec > k.TargetSec {
			met = "NOT met"
		}
		fmt.Fprintf(w, "  kill-node   SIGKILL %s: its %d sessions all ended in %s's log after %.2f s (first after %.2f s); target --lost-after + 1 s = %.1f s: %s\n",
			k.Node, k.Sessions, b.nodes[0].label(), k.AllLostSec, k.FirstEndedSec, k.TargetSec, met)
		fmt.Fprintf(w, "              ends recorded by cause %v, by actor %v\n", k.EndsByCause, k.EndsByActor)
		fmt.Fprintf(w, "              its %d clients welcomed on another node after %.2f s (p50 %.2f s, p90 %.2f s; %d resumed their session; per node %v; %d failed attempts)\n",
			k.Moved, k.AllMovedSec, k.MovedP50Sec, k.MovedP90Sec, k.Resumed, k.MovedPerNode, k.FailedAttempts)
		fmt.Fprintf(w, "              JetStream before the kill: stream leader %s, node-state bucket leader %s, the replicas' consumers on %v; after: %s, %s\n",
			k.Before.StreamLeader, k.Before.NodesLeader, k.Before.Consumers, k.After.StreamLeader, k.After.NodesLeader)
		if len(k.SurvivorsLost) > 0 {
			fmt.Fprintf(w, "              WRONG: live sessions of nodes that were not killed recorded lost (their clients reconnected): %v\n", k.SurvivorsLost)
		}
		for _, msg := range slices.Sorted(maps.Keys(k.Warnings)) {
			fmt.Fprintf(w, "              survivor log x%d: %s\n", k.Warnings[msg], msg)
		}
	}
	b.table(w)
	c := &r.Clients
	who := fmt.Sprintf("hub/client, %d per connection", b.o.perConn)
	if r.Transport == "ws" {
		who = "WebSocket (sessionledger.v1+proto), one connection each"
	}
	fmt.Fprintf(w, "  clients     %s: %d connects (%d resumes), %d notifications delivered (%d redelivered), %d duplicates dropped, %d failed connect attempts\n",
		who, c.Connects, c.Resumes, c.Delivered, c.Redelivered, c.Duplicates, c.FailedAttempts)
}

// table prints the measures ../shared/peers/compare.sh compares, under
// the same names, as a Markdown table.
func (b *bench) table(w io.Writer) {
	r := &b.res
	conns := fmt.Sprintf("%d sessions per connection", b.o.perConn)
	if b.o.perConn == 1 {
		conns = fmt.Sprintf("one connection per session (a descriptor each in hubbench and in hubd: at most %d sessions under this fd limit)",
			int(r.Machine.FDLimit)-fdsBesidesConns)
	}
	col := "hubd"
	if r.Cluster != nil {
		col = fmt.Sprintf("%d hubd nodes", r.Cluster.Nodes)
	}
	fmt.Fprintf(w, "\nN = %d, %s\n\n| measure | %s |\n| --- | ---: |\n", r.Sessions, conns, col)
	fmt.Fprintf(w, "| connect rate (/s) | %.0f |\n", r.Connect.PerSecond)
	if r.Fanout.Rounds > 0 {
		fmt.Fprintf(w, "| fan-out (deliveries/s) | %.0f |\n", r.Fanout.PerSecondMed)
	}
	fmt.Fprintf(w, "| RSS per idle session (KiB) | %.1f |\n", r.Memory.RSSPerSession/1024)
	fmt.Fprintf(w, "| Go heap per idle session (KiB) | %.1f |\n", r.Memory.HeapPerSession/1024)
	fmt.Fprintf(w, "| goroutines per idle session | %.2f |\n", r.Memory.GoroutinesPerSs)
	if r.Kick.N > 0 {
		fmt.Fprintf(w, "| kick -> client sees end p50 (ms) | %.2f |\n| kick -> client sees end p99 (ms) | %.2f |\n", r.Kick.EndP50, r.Kick.EndP99)
	}
	fmt.Fprintf(w, "| one fsynced append p50 / p99 (ms), same run | %.2f / %.2f |\n", r.Baseline.AppendP50, r.Baseline.AppendP99)
	if r.Kick.N > 0 {
		fmt.Fprintf(w, "| hubd's durable appends during the kicks, p50 / p99 (ms) | %.2f / %.2f |\n", r.Kick.AppendP50, r.Kick.AppendP99)
		if r.Kick.Commits > 0 { // a hubd without the histogram has none
			fmt.Fprintf(w, "| hubd's ledger commits during the kicks, p50 / p99 (ms) | %.2f / %.2f |\n", r.Kick.CommitP50, r.Kick.CommitP99)
		}
		fmt.Fprintf(w, "| hubd: kick event to session end recorded, p50 / p99 (ms) | %.2f / %.2f |\n", r.Kick.EnforceP50, r.Kick.EnforceP99)
	}
	fmt.Fprintf(w, "| CPU per connect, hubd + clients (us) | %.0f + %.0f |\n", r.Connect.HubdCPUUs, r.Connect.ClientsCPUUs)
	fmt.Fprintf(w, "| records per ledger commit during the connects | %.1f |\n", r.Connect.MeanBatch)
	if r.Fanout.Rounds > 0 {
		fmt.Fprintf(w, "| CPU per delivery, hubd + clients (us) | %.1f + %.1f |\n", r.Fanout.HubdCPUUs, r.Fanout.ClientsCPUUs)
	}
	fmt.Fprintln(w)
}
