package hub

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// TestWireEnumsAgree holds the two protos together where they share
// meaning: Reconnect and KickMode are cast between hub.proto and
// events.proto, so their values must have the same numbers and names; and
// every DisconnectCode the wire has is the code of exactly the cause of
// the same name. A value added to one side only fails here.
func TestWireEnumsAgree(t *testing.T) {
	same := func(a, b protoreflect.EnumDescriptor) {
		t.Helper()
		av, bv := a.Values(), b.Values()
		if av.Len() != bv.Len() {
			t.Errorf("%s has %d values, %s %d", a.FullName(), av.Len(), b.FullName(), bv.Len())
		}
		for i := range av.Len() {
			v := av.Get(i)
			w := bv.ByNumber(v.Number())
			if w == nil || w.Name() != v.Name() {
				t.Errorf("%s %s = %d; %s has %v at %d", a.FullName(), v.Name(), v.Number(), b.FullName(), w, v.Number())
			}
		}
	}
	same(hubpb.Reconnect(0).Descriptor(), eventpb.Reconnect(0).Descriptor())
	same(hubpb.KickMode(0).Descriptor(), eventpb.KickMode(0).Descriptor())

	codes := hubpb.DisconnectCode(0).Descriptor().Values()
	for i := range codes.Len() {
		v := codes.Get(i)
		if v.Number() == 0 {
			continue
		}
		name := strings.TrimPrefix(string(v.Name()), "DISCONNECT_CODE_")
		c, ok := eventpb.DisconnectCause_value["DISCONNECT_CAUSE_"+name]
		if !ok {
			t.Errorf("wire code %s names no ledger cause", v.Name())
			continue
		}
		if got := (&Disconnect{Cause: Cause(c)}).Wire().GetCode(); got != hubpb.DisconnectCode(v.Number()) {
			t.Errorf("cause %s goes on the wire as %s; want %s", Cause(c), got, v.Name())
		}
	}
	for c, code := range causeCodes {
		if want := "DISCONNECT_CODE_" + strings.ToUpper(c.String()); code.String() != want {
			t.Errorf("cause %s maps to %s; want %s", c, code, want)
		}
	}
}

// TestCauseString: the names metrics, the audit tool and clients share.
func TestCauseString(t *testing.T) {
	for c, want := range map[Cause]string{CauseClientClosed: "client_closed", CauseKicked: "kicked", CauseLost: "lost",
		CauseSlowConsumer: "slow_consumer", Cause(99): "cause_99"} {
		if got := c.String(); got != want {
			t.Errorf("Cause(%d).String() = %q; want %q", int(c), got, want)
		}
	}
}
