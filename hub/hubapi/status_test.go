package hubapi_test

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub/hubapi"
)

// TestOutcomeUnknown: the detail is found with its message ids; a plain
// Unavailable, another reason, another domain or a non-status error are
// not outcome unknown. (hub's TestOutcomeUnknownStatus reads the hub's
// own status with it.)
func TestOutcomeUnknown(t *testing.T) {
	with := func(reason, domain string) error {
		st, err := status.New(codes.Unavailable, "m").WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: domain,
			Metadata: map[string]string{"messages": "m1,m2"}})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	if ids, ok := hubapi.OutcomeUnknown(with(hubapi.ReasonOutcomeUnknown, hubapi.ErrorDomain)); !ok || !slices.Equal(ids, []string{"m1", "m2"}) {
		t.Fatalf("OutcomeUnknown = %v, %v; want m1, m2, true", ids, ok)
	}
	for name, err := range map[string]error{
		"plain Unavailable": status.Error(codes.Unavailable, "ledger unavailable"),
		"another reason":    with("OTHER", hubapi.ErrorDomain),
		"another domain":    with(hubapi.ReasonOutcomeUnknown, "example.com"),
		"not a status":      errors.New("outcome unknown"),
		"nil":               nil,
	} {
		if ids, ok := hubapi.OutcomeUnknown(err); ok {
			t.Errorf("%s: OutcomeUnknown = %v, true; want false", name, ids)
		}
	}
}
