// Package hubapi is what the hub's clients and the hub share besides the
// wire format (hubpb): the request limits the server enforces, the admin
// token file, and client tokens. Client tools (hubctl, auditq, hubbench)
// import it instead of hub, so they link no ledger, watermill or
// Prometheus; TestClientToolsLinkNoServer checks it.
package hubapi
