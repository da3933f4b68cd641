package hubapi

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
