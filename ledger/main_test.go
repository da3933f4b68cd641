package ledger_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: every
// goroutine the ledger starts (the writer, subscriptions) has an owner that
// stops it on Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// watermill's universal suite (TestPubSub) fans several
		// subscribers into one channel through its internal multiplier,
		// and some of its tests stop reading that channel: the forwarding
		// goroutine then blocks on a send forever, and the one waiting to
		// close the channel with it. Those goroutines are the suite's, not
		// the ledger's (our subscriptions under them have ended).
		goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func2"),
		goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func3"),
	)
}
