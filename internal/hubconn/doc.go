// Package hubconn is what the client tools (hubctl, auditq) share to reach
// a running hubd as an admin: the TLS configuration their flags ask for,
// and the admin token they present. Both tools take the same flags and
// say the same things through it.
//
// It links no server package (no ledger, bbolt, watermill or Prometheus):
// cmd/hubctl's TestClientToolsLinkNoServer and this package's
// TestLinksNoServer check it.
package hubconn
