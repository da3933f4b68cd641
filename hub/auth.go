package hub

import (
	"context"
	"crypto/subtle"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub/hubapi"
)

type actorKey struct{}

// ActorFrom returns the admin actor an authenticated call was made by.
func ActorFrom(ctx context.Context) string {
	a, _ := ctx.Value(actorKey{}).(string)
	return a
}

// needsAdmin says which methods need an admin token: everything except the
// client stream (which authenticates in Hello), health and reflection.
func needsAdmin(fullMethod string) bool {
	switch {
	case strings.HasPrefix(fullMethod, "/sessionledger.hub.v1.Hub/"),
		strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/"),
		strings.HasPrefix(fullMethod, "/grpc.reflection."):
		return false
	}
	return true
}

// adminWrite reports the Admin methods that record an event.
func adminWrite(fullMethod string) bool {
	switch fullMethod {
	case "/sessionledger.hub.v1.Admin/Kick", "/sessionledger.hub.v1.Admin/Ban",
		"/sessionledger.hub.v1.Admin/Unban", "/sessionledger.hub.v1.Admin/Notify":
		return true
	}
	return false
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// authorize reports whether the caller that authenticate let in may call
// fullMethod: nil, or ErrPermissionDenied. It is the one place that
// decides, for the interceptors and for WhoAmI (which the console asks to
// show only the actions a token may take). Today every admin token may call
// every admin method; roles for admin tokens decide here once they exist.
func (s *Server) authorize(_ context.Context, _ string) error {
	return nil
}

// adminMethods lists the admin methods registered on the hub's gRPC
// server (Admin, Audit, and whatever else needs an admin token), sorted.
func (s *Server) adminMethods() []string {
	s.mu.Lock()
	g := s.grpcSrv
	s.mu.Unlock()
	if g == nil {
		return nil
	}
	var out []string
	for svc, info := range g.GetServiceInfo() {
		for _, m := range info.Methods {
			if full := "/" + svc + "/" + m.Name; needsAdmin(full) {
				out = append(out, full)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (s *Server) authenticate(ctx context.Context) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	var got string
	for _, v := range md.Get("authorization") {
		// The scheme is case-insensitive (RFC 6750 via RFC 7235).
		if scheme, t, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") {
			got = strings.TrimSpace(t)
		}
	}
	actor := ""
	for tok, a := range s.cfg.AdminTokens {
		// Compare against every token in constant time per token.
		if subtle.ConstantTimeCompare([]byte(got), []byte(tok)) == 1 {
			actor = a
		}
	}
	if got == "" || actor == "" {
		s.metrics.authFailures.Inc()
		return ctx, ErrUnauthenticated
	}
	return context.WithValue(ctx, actorKey{}, actor), nil
}

// UnaryInterceptor checks the admin token on admin calls and counts them.
func (s *Server) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !needsAdmin(info.FullMethod) {
		resp, err := handler(ctx, req)
		return resp, toStatus(err)
	}
	resp, err := s.adminUnary(ctx, req, info, handler)
	s.countAdminCall(info.FullMethod, err)
	return resp, err
}

func (s *Server) adminUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := s.authenticate(ctx)
	if err == nil {
		err = s.authorize(ctx, info.FullMethod)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	if adminWrite(info.FullMethod) && s.isClosing() {
		// Once shutdown began the projections may be closed: an event
		// would be recorded but never applied, and a retrying operator
		// would record it twice.
		return nil, toStatus(ErrShuttingDown)
	}
	resp, err := handler(ctx, req)
	return resp, toStatus(err)
}

// StreamInterceptor checks the admin token on admin streams (the audit
// service) and counts them.
func (s *Server) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !needsAdmin(info.FullMethod) {
		return toStatus(handler(srv, ss))
	}
	ctx, err := s.authenticate(ss.Context())
	if err == nil {
		err = s.authorize(ctx, info.FullMethod)
	}
	if err == nil {
		err = handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	}
	err = toStatus(err)
	s.countAdminCall(info.FullMethod, err)
	return err
}

// countAdminCall counts an admin call in sessionledger_admin_calls_total
// by method ("Admin/Kick", "Audit/Verify") and gRPC code. Only registered
// methods reach the interceptors, so the labels stay few.
func (s *Server) countAdminCall(fullMethod string, err error) {
	method := fullMethod
	if i := strings.LastIndex(fullMethod, "/"); i > 0 {
		service := fullMethod[1:i]
		if j := strings.LastIndex(service, "."); j >= 0 {
			service = service[j+1:]
		}
		method = service + fullMethod[i:]
	}
	s.metrics.adminCalls.WithLabelValues(method, status.Code(err).String()).Inc()
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *ctxStream) Context() context.Context { return c.ctx }

// identify returns the user and device of a Hello: from its JWT when a
// secret is configured, from the Hello itself otherwise.
func (s *Server) identify(user, device, token string) (string, string, error) {
	if len(s.cfg.JWTSecret) == 0 {
		if user == "" {
			return "", "", invalidf("hello: user is required")
		}
		return user, device, nil
	}
	if token == "" {
		return "", "", ErrUnauthenticated
	}
	var c hubapi.Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return s.cfg.JWTSecret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(s.cfg.Now))
	if err != nil || c.Subject == "" {
		return "", "", ErrUnauthenticated
	}
	if (user != "" && user != c.Subject) || (device != "" && c.Device != "" && device != c.Device) {
		return "", "", ErrUnauthenticated
	}
	if c.Device != "" {
		device = c.Device
	}
	return c.Subject, device, nil
}
