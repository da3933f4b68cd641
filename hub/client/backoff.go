package client

import "time"

// Backoff is the reconnect schedule: the n-th attempt in a row (from 0)
// waits min(Max, Base·2ⁿ), of which the fraction Jitter is random, so many
// clients thrown out at once do not come back at once.
//
// The count n restarts only once a session has lasted Max: a session
// that the server welcomes and ends again at once (repeated kicks, a slow
// consumer that cannot keep up) counts as an attempt that failed, so such
// a client backs off up to Max instead of coming back every Base.
type Backoff struct {
	// Base is the first delay (default 250ms).
	Base time.Duration
	// Max caps the delay (default 30s).
	Max time.Duration
	// Jitter is the random fraction of each delay, from 0 (none) to 1
	// (anywhere between 0 and the delay). Zero means the default, 0.5; a
	// negative value means no jitter.
	Jitter float64
}

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = 250 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 30 * time.Second
	}
	if b.Max < b.Base {
		b.Max = b.Base
	}
	// A negative Jitter stays negative (no jitter, see jitter) so that
	// applying the defaults twice does not turn "none" into the default.
	switch {
	case b.Jitter == 0:
		b.Jitter = 0.5
	case b.Jitter > 1:
		b.Jitter = 1
	}
	return b
}

// jitter returns the random fraction in [0, 1].
func (b Backoff) jitter() float64 { return max(b.Jitter, 0) }

// Delay returns the wait before attempt n (0 for the first reconnect), with
// u in [0, 1) as the random draw (zero fields take their defaults): d·(1−Jitter) + u·d·Jitter.
func (b Backoff) Delay(n int, u float64) time.Duration {
	b = b.withDefaults()
	d := b.Base
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	fixed := time.Duration(float64(d) * (1 - b.jitter()))
	return fixed + time.Duration(u*float64(d)*b.jitter())
}

// afterJitter caps the random part added to an advised wait.
const afterJitter = 0.2

// After returns the wait when the server advised "reconnect after a" and n
// is the attempt number as for Delay, with u in [0, 1) as the random
// draw: the longer of a and Delay(n, u), plus a random part of up to
// min(Jitter, 0.2) of that (none when Jitter is negative). It is never
// less than a. The random part is proportional so that the clients of a
// node told the same (every session of a server that shuts down) spread
// over a fifth of the advice instead of returning in the same instant,
// and taking Delay into account keeps a client that is thrown out again
// and again backing off even when each time it is told a short wait.
func (b Backoff) After(a time.Duration, n int, u float64) time.Duration {
	b = b.withDefaults()
	w := max(a, b.Delay(n, u))
	return w + time.Duration(u*float64(w)*min(b.jitter(), afterJitter))
}
