package hubapi

import (
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// The ErrorInfo details the hub attaches to a gRPC status, which client
// tools read without linking the hub (docs/api.md).
const (
	// ErrorDomain is the Domain of every ErrorInfo detail the hub sends.
	ErrorDomain = "sessionledger"
	// ReasonOutcomeUnknown is the Reason of the ErrorInfo on an
	// Unavailable whose action a cluster's log may still record
	// (hub.OutcomeUnknown); Metadata["messages"] lists the events'
	// message ids. A tool must not simply repeat such a call.
	ReasonOutcomeUnknown = "OUTCOME_UNKNOWN"
)

// OutcomeUnknown reports whether err, a call's error, says the cluster's
// log may still record the action the call asked for (an ErrorInfo of
// ReasonOutcomeUnknown in ErrorDomain), and with it the events' message
// ids: what `auditq events --message ID` looks for before the call is
// repeated.
func OutcomeUnknown(err error) (messages []string, ok bool) {
	st, isStatus := status.FromError(err)
	if !isStatus {
		return nil, false
	}
	for _, d := range st.Details() {
		if info, isInfo := d.(*errdetails.ErrorInfo); isInfo && info.GetReason() == ReasonOutcomeUnknown && info.GetDomain() == ErrorDomain {
			if ids := info.GetMetadata()["messages"]; ids != "" {
				messages = strings.Split(ids, ",")
			}
			return messages, true
		}
	}
	return nil, false
}
