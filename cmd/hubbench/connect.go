package main

// Phase 1: connect every session and wait until the hub holds them.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// connectAll dials every session through hub/client, o.concurrency at a
// time, each on its group's shared connection.
func (b *bench) connectAll() error {
	n := b.o.sessions
	b.sessions = make([]*sess, n)
	sem := make(chan struct{}, b.o.concurrency)
	var wg sync.WaitGroup
	var failures atomic.Int64
	var firstErr atomic.Value
	if b.o.profile != "" {
		done := b.cpuProfile("connect", 8)
		defer done()
	}
	start := time.Now()
	hubdCPU, clientsCPU := b.cpuTimes()
	commits, records := b.metric("sessionledger_ledger_commits_total"), b.metric("sessionledger_ledger_records_total")
	for i := range n {
		s := &sess{b: b, user: fmt.Sprintf("bench-user-%06d", i)}
		switch {
		case b.o.clustered():
			s.addrs = b.rotated(i)
		case b.wsListen == "":
			s.conn = b.conns[i%len(b.conns)]
		}
		b.sessions[i] = s
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := s.dial(ctx); err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
		}()
		if (i+1)%5000 == 0 {
			b.printf("connect: %d sessions requested (%d live)", i+1, b.live.Load())
		}
	}
	wg.Wait() // each Dial is bounded by its ctx
	d := time.Since(start)
	hubdCPU2, clientsCPU2 := b.cpuTimes()
	c := &b.res.Connect
	if dc := b.metric("sessionledger_ledger_commits_total") - commits; dc > 0 {
		c.MeanBatch = (b.metric("sessionledger_ledger_records_total") - records) / dc
	}
	c.Seconds, c.PerSecond, c.Failures = d.Seconds(), float64(n)/d.Seconds(), int(failures.Load())
	c.HubdCPUUs = float64((hubdCPU2 - hubdCPU).Microseconds()) / float64(n)
	c.ClientsCPUUs = float64((clientsCPU2 - clientsCPU).Microseconds()) / float64(n)
	if v := firstErr.Load(); v != nil {
		c.FirstError = v.(string)
	}
	b.printf("connect: %d sessions in %.2fs = %.0f/s (%d failed); CPU per connect: hubd %.0f µs, clients %.0f µs; ledger group commits of %.1f records on average",
		n-c.Failures, d.Seconds(), c.PerSecond, c.Failures, c.HubdCPUUs, c.ClientsCPUUs, c.MeanBatch)
	if c.Failures > 0 {
		return fmt.Errorf("%d connects failed, first: %s", c.Failures, c.FirstError)
	}
	return nil
}

// waitAllLive waits until every session is live again (kicked ones
// resume after the client's backoff), at most d.
func (b *bench) waitAllLive(what string, d time.Duration) error {
	n := int64(len(b.sessions))
	deadline := time.Now().Add(d)
	for b.live.Load() < n {
		if b.gaveUp.Load() > 0 {
			return fmt.Errorf("%s: %d clients gave up, first: %v", what, b.gaveUp.Load(), b.gaveUpWhy.Load())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: only %d of %d sessions live after %s", what, b.live.Load(), n, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// closeSessions closes every client (Goodbye, recorded as client_closed),
// 256 at a time, and waits for them.
func (b *bench) closeSessions() {
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for _, s := range b.sessions {
		c := s.client()
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Close()
			<-sem
		}()
	}
	wg.Wait()
}

// clientStats sums the clients' own counters.
func (b *bench) clientStats() {
	cs := &b.res.Clients
	for _, s := range b.sessions {
		if c := s.client(); c != nil {
			st := c.Stats()
			cs.Connects += st.Connects
			cs.Resumes += st.Resumes
			cs.Delivered += st.Delivered
			cs.Redelivered += st.Redelivered
			cs.Duplicates += st.Duplicates
		}
	}
	cs.FailedAttempts = b.failedAttempts.Load()
}
