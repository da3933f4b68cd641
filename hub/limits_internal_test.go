package hub

import (
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
