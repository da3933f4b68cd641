package hub

import (
	"fmt"
	"testing"
	"time"
)

// TestFrameBucketPaces: a session may send two seconds' worth of frames at
// once, then one per 1/rate; a quiet spell refills the burst.
func TestFrameBucketPaces(t *testing.T) {
	b := newFrameBucket(10)
	t0 := time.Unix(1000, 0)
	for i := range 20 {
		if d := b.take(t0); d != 0 {
			t.Fatalf("frame %d of the burst waits %s; want 0", i+1, d)
		}
	}
	if d := b.take(t0); d != 100*time.Millisecond {
		t.Fatalf("frame 21 waits %s; want 100ms", d)
	}
	// Read when due, each next frame waits one interval more.
	now := t0.Add(100 * time.Millisecond)
	for i := range 5 {
		if d := b.take(now); d != 100*time.Millisecond {
			t.Fatalf("paced frame %d waits %s; want 100ms", i, d)
		}
		now = now.Add(100 * time.Millisecond)
	}
	// Three quiet seconds refill the burst, and no more than it.
	now = now.Add(3 * time.Second)
	for i := range 20 {
		if d := b.take(now); d != 0 {
			t.Fatalf("after a pause, frame %d waits %s; want 0", i+1, d)
		}
	}
	if d := b.take(now); d == 0 {
		t.Fatal("the burst after a pause is larger than two seconds' worth")
	}
}

// TestConnectLimitIsATokenBucketPerUser: a user gets burst connects at
// once, then one per 1/rate; no minute, wherever it starts, passes more
// than rate + burst (a fixed window let a user pass twice its limit across
// the window's edge); one user's connects do not spend another's; and
// buckets that are full again are swept.
func TestConnectLimitIsATokenBucketPerUser(t *testing.T) {
	const perMin, burst = 60, 5
	r := newRateLimiter(perMin, burst)
	t0 := time.Unix(1_000_000, 0)
	for i := range burst {
		if !r.allow("eager", t0) {
			t.Fatalf("connect %d of the burst refused", i+1)
		}
	}
	if r.allow("eager", t0) {
		t.Fatal("connect past the burst allowed at once")
	}
	if !r.allow("patient", t0) {
		t.Fatal("another user is limited by eager's connects")
	}
	if !r.allow("eager", t0.Add(time.Second)) {
		t.Fatal("one connect a second (60/min) refused after a second")
	}

	// The old fixed window's edge: a user who tries every 10 ms for three
	// minutes. Every one-minute window holds at most perMin + burst.
	r = newRateLimiter(perMin, burst)
	var passed []time.Time
	for at := t0; at.Before(t0.Add(3 * time.Minute)); at = at.Add(10 * time.Millisecond) {
		if r.allow("edge", at) {
			passed = append(passed, at)
		}
	}
	for i := range passed {
		n := 0
		for j := i; j < len(passed) && passed[j].Sub(passed[i]) < time.Minute; j++ {
			n++
		}
		if n > perMin+burst {
			t.Fatalf("%d connects passed in the minute from %s; want at most %d", n, passed[i].Sub(t0), perMin+burst)
		}
	}
	if want := 3*perMin + burst; len(passed) < want-2 || len(passed) > want {
		t.Fatalf("%d connects passed in three minutes; want about %d", len(passed), want)
	}

	// Buckets of users who stopped connecting are dropped once full.
	r = newRateLimiter(perMin, burst)
	for i := range 3 * minSweep {
		r.allow(fmt.Sprint("user-", i), t0)
	}
	// The sweeps run as new users arrive (their cost spread over them).
	for i := range 2 * minSweep {
		r.allow(fmt.Sprint("late-", i), t0.Add(time.Minute))
	}
	if n := r.buckets(); n >= 3*minSweep {
		t.Fatalf("%d buckets once the first %d refilled; want the sweep to drop those", n, 3*minSweep)
	}
}
