// Package console is hubd's web console: a few static pages (HTML, CSS and
// JavaScript from an embed.FS, no build step) and, beside them, the Admin
// and Audit gRPC services transcoded to the Connect protocol (HTTP/1.1 or
// 2, JSON) by connectrpc.com/vanguard, so a browser calls the very services
// hubctl and auditq call — the same handlers behind the same interceptors
// (admin token and role) — and no second API is
// written by hand. docs/console.md has the pages and the security rules.
//
// # Why vanguard
//
// Browsers cannot speak gRPC (no trailers, no client streams). Vanguard
// transcodes in process, on the grpc.Server the daemon already runs
// (through its ServeHTTP), from the service descriptors alone: no HTTP
// annotations in the .proto files, no generated gateway code, no loopback
// client connection. Its Connect protocol has server streaming over plain
// fetch, which the timeline, verify and the live tail need; grpc-gateway
// would need annotations, a generator and a second hop, and streams as
// newline-delimited JSON.
//
// # Security
//
// The token is typed in, kept in the tab's sessionStorage and sent as an
// Authorization header on each call: never in a URL or a cookie, so no
// other site can make the browser call with it (a cross-site request with
// that header needs a CORS preflight, which this server never grants).
// Every page is served with a Content-Security-Policy that allows scripts,
// styles and connections to this origin only and no inline script; the
// pages write text only through textContent, never as HTML, so a name or a
// reason holding markup shows as text.
package console

import (
	"embed"
	"fmt"
	"io/fs"
	"net/http"

	"connectrpc.com/vanguard"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
)

//go:embed static
var static embed.FS

// Services are the gRPC services the console transcodes: the operators'
// calls and the audit queries. The client stream (Hub), health and
// reflection are not exposed.
func Services() []string {
	return []string{"sessionledger.hub.v1.Admin", "sessionledger.audit.v1.Audit"}
}

// CSP is the Content-Security-Policy of every console response.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the console: the pages under /, and the services in
// Services at their Connect paths (/sessionledger.hub.v1.Admin/Kick, ...),
// transcoded into calls on g, which must have them registered.
func Handler(g *grpc.Server) (http.Handler, error) {
	info := g.GetServiceInfo()
	svcs := make([]*vanguard.Service, 0, len(Services()))
	for _, name := range Services() {
		if _, ok := info[name]; !ok {
			return nil, fmt.Errorf("console: %s is not registered on the gRPC server", name)
		}
		svcs = append(svcs, vanguard.NewService(name, g))
	}
	t, err := vanguard.NewTranscoder(svcs,
		vanguard.WithDefaultServiceOptions(vanguard.WithTargetProtocols(vanguard.ProtocolGRPC), vanguard.WithTargetCodecs(vanguard.CodecProto)),
		// One naming style: field names as in the .proto files and in
		// hubctl's and auditq's JSON (session_id, not sessionId).
		vanguard.WithCodec(func(res vanguard.TypeResolver) vanguard.Codec {
			return &vanguard.JSONCodec{
				MarshalOptions:   protojson.MarshalOptions{Resolver: res, UseProtoNames: true},
				UnmarshalOptions: protojson.UnmarshalOptions{Resolver: res},
			}
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	pages, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	files := http.FileServerFS(pages)
	mux := http.NewServeMux()
	for _, name := range Services() {
		mux.Handle("POST /"+name+"/", noStore(t))
	}
	mux.Handle("GET /", files)
	return secure(mux), nil
}

// secure adds the headers every response carries.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", CSP)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}
