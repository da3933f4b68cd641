package main

// Phase 4: the reconnect storm after a restart.

import (
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"
)

// reconnectStorm SIGTERMs hubd (every session gets server_shutdown with a
// jittered reconnect delay), restarts it on the same address and data, and
// waits until every session resumed.
func (b *bench) reconnectStorm() error {
	st := &b.res.Storm
	if err := b.waitAllLive("before the storm", time.Minute); err != nil {
		return err
	}
	n := len(b.sessions)
	st.Sessions = n
	b.storm.mu.Lock()
	b.storm.start = time.Now()
	b.storm.mu.Unlock()
	b.storm.on.Store(true)
	defer b.storm.on.Store(false)
	hubd := b.nodes[0]
	if err := hubd.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-hubd.done:
	case <-time.After(150 * time.Second):
		return errors.New("hubd did not stop within 150s of SIGTERM")
	}
	st.ShutdownSec = time.Since(b.storm.start).Seconds()
	b.printf("storm: hubd stopped %.2fs after SIGTERM; restarting", st.ShutdownSec)
	t := time.Now()
	if err := b.startHubd(hubd); err != nil {
		return err
	}
	st.RestartSec = time.Since(t).Seconds()
	deadline := time.Now().Add(180 * time.Second)
	for {
		b.storm.mu.Lock()
		got := len(b.storm.times)
		b.storm.mu.Unlock()
		if got >= n || time.Now().After(deadline) || b.gaveUp.Load() > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.storm.mu.Lock()
	times := slices.Clone(b.storm.times)
	advice := slices.Clone(b.storm.advice)
	waits := slices.Clone(b.storm.waits)
	b.storm.mu.Unlock()
	st.Resumed = len(times)
	st.Retries = b.storm.retries.Load()
	if len(times) > 0 {
		st.AllResumedSec = slices.Max(times).Seconds()
		st.ResumeP10, st.ResumeP50, st.ResumeP90 = pct(times, 10)/1000, pct(times, 50)/1000, pct(times, 90)/1000
		st.PerSecond = make([]int, int(st.AllResumedSec)+1)
		for _, d := range times {
			st.PerSecond[int(d.Seconds())]++
		}
	}
	if len(advice) > 0 {
		st.AdviceMinMs = float64(slices.Min(advice).Microseconds()) / 1000
		st.AdviceMaxMs = float64(slices.Max(advice).Microseconds()) / 1000
		st.WaitMinMs = float64(slices.Min(waits).Microseconds()) / 1000
		st.WaitMaxMs = float64(slices.Max(waits).Microseconds()) / 1000
	}
	b.printf("storm: %d of %d resumed; all by %.2fs after SIGTERM (p10 %.2fs, p50 %.2fs, p90 %.2fs); %d failed attempts while hubd was down",
		st.Resumed, n, st.AllResumedSec, st.ResumeP10, st.ResumeP50, st.ResumeP90, st.Retries)
	if b.gaveUp.Load() > 0 {
		return fmt.Errorf("storm: %d clients gave up, first: %v", b.gaveUp.Load(), b.gaveUpWhy.Load())
	}
	if st.Resumed < n {
		return fmt.Errorf("storm: only %d of %d sessions resumed within 180s", st.Resumed, n)
	}
	return nil
}
