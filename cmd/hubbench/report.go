package main

// The summary table and its arithmetic.

import (
	"fmt"
	"io"
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
	fmt.Fprintf(w, "\nhubbench: %d sessions over %d %s connections, hubd and clients on one machine (%d CPUs, %s, %s, %s)\n",
		r.Sessions, r.Connections, map[string]string{"grpc": "gRPC", "ws": "WebSocket"}[r.Transport], r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, limit)
	fmt.Fprintf(w, "  connect     %.0f sessions/s (%d in %.2fs), every connect durable\n", r.Connect.PerSecond, r.Sessions, r.Connect.Seconds)
	fmt.Fprintf(w, "  memory      per idle session: %.1f KB RSS (%.1f KB anonymous; the rest is the ledger's mmap), %.1f KB Go heap, %.1f KB stacks, %.2f goroutines (hubd RSS %.0f MiB)\n",
		r.Memory.RSSPerSession/1024, r.Memory.AnonPerSession/1024, r.Memory.HeapPerSession/1024, r.Memory.StackPerSession/1024, r.Memory.GoroutinesPerSs, mib(r.Memory.RSS))
	fmt.Fprintf(w, "  baseline    one durable ledger append: p50 %.2f ms, p99 %.2f ms (same disk, same run)\n", r.Baseline.AppendP50, r.Baseline.AppendP99)
	if r.Kick.N > 0 {
		fmt.Fprintf(w, "  kick        Kick call -> client sees its stream end: p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d kicks; %d-%d others live (median %d: kicked clients resume meanwhile)\n",
			r.Kick.EndP50, r.Kick.EndP99, r.Kick.EndMax, r.Kick.N, r.Kick.LiveMin, r.Sessions-1, r.Kick.LiveMedian)
		fmt.Fprintf(w, "              (Kick call returns p99 %.2f ms; Disconnect frame p99 %.2f ms; %d timeouts, counted as %s; p50 = %.1fx the baseline append, which a kick needs two of)\n",
			r.Kick.CallP99, r.Kick.FrameP99, r.Kick.Timeouts, kickTimeout, r.Kick.EndP50/max(r.Baseline.AppendP50, 0.001))
		if r.Kick.Durable {
			fmt.Fprintf(w, "              every kick read back from hubd's ledger at the seq its reply gave, with its session's end caused by it\n")
		}
	}
	if r.Fanout.Rounds > 0 {
		fmt.Fprintf(w, "  fan-out     %.0f deliveries/s (median of %d notify-all rounds to all %d sessions)\n",
			r.Fanout.PerSecondMed, r.Fanout.Rounds, r.Fanout.Sessions)
	}
	if r.Storm.Sessions > 0 {
		fmt.Fprintf(w, "  storm       all %d resumed %.2fs after SIGTERM (shutdown %.2fs, restart %.2fs); advice %.0f-%.0f ms, client waits %.0f-%.0f ms; resumes p10/p50/p90 %.2f/%.2f/%.2fs; per second %v; %d failed attempts\n",
			r.Storm.Resumed, r.Storm.AllResumedSec, r.Storm.ShutdownSec, r.Storm.RestartSec, r.Storm.AdviceMinMs, r.Storm.AdviceMaxMs,
			r.Storm.WaitMinMs, r.Storm.WaitMaxMs, r.Storm.ResumeP10, r.Storm.ResumeP50, r.Storm.ResumeP90, r.Storm.PerSecond, r.Storm.Retries)
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
	fmt.Fprintf(w, "\nN = %d, %s\n\n| measure | hubd |\n| --- | ---: |\n", r.Sessions, conns)
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
		fmt.Fprintf(w, "| hubd: kick event to session end recorded, p50 / p99 (ms) | %.2f / %.2f |\n", r.Kick.EnforceP50, r.Kick.EnforceP99)
	}
	fmt.Fprintf(w, "| CPU per connect, hubd + clients (us) | %.0f + %.0f |\n", r.Connect.HubdCPUUs, r.Connect.ClientsCPUUs)
	fmt.Fprintf(w, "| records per ledger commit during the connects | %.1f |\n", r.Connect.MeanBatch)
	if r.Fanout.Rounds > 0 {
		fmt.Fprintf(w, "| CPU per delivery, hubd + clients (us) | %.1f + %.1f |\n", r.Fanout.HubdCPUUs, r.Fanout.ClientsCPUUs)
	}
	fmt.Fprintln(w)
}
