package hub

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

type actorKey struct{}

type roleKey struct{}

// ActorFrom returns the admin actor an authenticated call was made by.
func ActorFrom(ctx context.Context) string {
	a, _ := ctx.Value(actorKey{}).(string)
	return a
}

// RoleFrom returns the role of the admin token an authenticated call was
// made with ("" outside an admin call).
func RoleFrom(ctx context.Context) hubapi.Role {
	r, _ := ctx.Value(roleKey{}).(hubapi.Role)
	return r
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

// methodRole is the least role that may call an admin method. The Audit
// service and the read-only Admin calls are for auditors, the calls that
// act on sessions for operators, and everything else (Backup, and any
// method added later until it is listed here) for admins only: a new
// method is closed until someone decides who may call it.
func methodRole(fullMethod string) hubapi.Role {
	switch fullMethod {
	case "/sessionledger.hub.v1.Admin/ListSessions", "/sessionledger.hub.v1.Admin/GetSession",
		"/sessionledger.hub.v1.Admin/ClusterStatus", "/sessionledger.hub.v1.Admin/WhoAmI",
		"/sessionledger.hub.v1.Admin/LedgerStatus":
		return hubapi.RoleAuditor
	case "/sessionledger.hub.v1.Admin/Kick", "/sessionledger.hub.v1.Admin/Ban", "/sessionledger.hub.v1.Admin/Unban",
		"/sessionledger.hub.v1.Admin/Notify", "/sessionledger.hub.v1.Admin/Revoke", "/sessionledger.hub.v1.Admin/Drain":
		return hubapi.RoleOperator
	}
	if strings.HasPrefix(fullMethod, "/sessionledger.audit.v1.Audit/") {
		return hubapi.RoleAuditor
	}
	return hubapi.RoleAdmin
}

// adminWrite reports the Admin methods that record an event.
func adminWrite(fullMethod string) bool {
	switch fullMethod {
	case "/sessionledger.hub.v1.Admin/Kick", "/sessionledger.hub.v1.Admin/Ban",
		"/sessionledger.hub.v1.Admin/Unban", "/sessionledger.hub.v1.Admin/Notify",
		"/sessionledger.hub.v1.Admin/Revoke", "/sessionledger.hub.v1.Admin/Drain":
		return true
	}
	return false
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// adminSet is the admin tokens in force; SetAdminTokens replaces it whole.
type adminSet struct{ tokens []hubapi.AdminToken }

// SetAdminTokens replaces the admin tokens (a reload of the token file):
// calls from then on are checked against toks. It refuses a set that could
// not work (empty, a token shorter than hubapi.MinAdminTokenLen, an
// unknown role) and keeps the tokens in force then.
func (s *Server) SetAdminTokens(toks []hubapi.AdminToken) error {
	if err := validAdminTokens(toks); err != nil {
		return err
	}
	s.admins.Store(&adminSet{tokens: append([]hubapi.AdminToken(nil), toks...)})
	return nil
}

func validAdminTokens(toks []hubapi.AdminToken) error {
	if len(toks) == 0 {
		return errors.New("no admin token configured")
	}
	for _, t := range toks {
		if len(t.Token) < hubapi.MinAdminTokenLen || !t.Role.Valid() {
			return fmt.Errorf("admin tokens must be at least %d characters and have a role (auditor, operator or admin)", hubapi.MinAdminTokenLen)
		}
	}
	return nil
}

// callerCert returns the subject of the caller's verified client
// certificate, if the connection carries one.
func callerCert(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return "", false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	c := ti.State.VerifiedChains[0][0]
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName, true
	}
	return c.Subject.String(), true
}

func remoteOf(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// authenticate finds the caller's admin token and checks it may call
// fullMethod. The actor recorded for the call is the token's name, or for
// a token without one the subject of the caller's client certificate (else
// "admin"). With RequireAdminCert a caller without a verified client
// certificate is refused whatever its token.
func (s *Server) authenticate(ctx context.Context, fullMethod string) (context.Context, error) {
	subject, hasCert := callerCert(ctx)
	if s.cfg.RequireAdminCert && !hasCert {
		s.metrics.authFailures.Inc()
		return ctx, ErrClientCert
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var got string
	for _, v := range md.Get("authorization") {
		// The scheme is case-insensitive (RFC 6750 via RFC 7235).
		if scheme, t, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") {
			got = strings.TrimSpace(t)
		}
	}
	var match *hubapi.AdminToken
	set := s.admins.Load()
	for i := range set.tokens {
		// Compare against every token in constant time per token.
		if subtle.ConstantTimeCompare([]byte(got), []byte(set.tokens[i].Token)) == 1 {
			match = &set.tokens[i]
		}
	}
	if got == "" || match == nil {
		s.metrics.authFailures.Inc()
		return ctx, ErrUnauthenticated
	}
	actor := match.Name
	if actor == "" {
		actor = "admin"
		if hasCert {
			actor = subject
		}
	}
	if need := methodRole(fullMethod); !match.Role.Allows(need) {
		s.refuseAdminCall(actor, match.Role, need, fullMethod, remoteOf(ctx))
		return ctx, &RoleError{Actor: actor, Role: match.Role, Needs: need, Method: shortMethod(fullMethod)}
	}
	return context.WithValue(context.WithValue(ctx, actorKey{}, actor), roleKey{}, match.Role), nil
}

// adminMethods lists the admin methods registered on the hub's gRPC
// server (Admin, Audit, and whatever else needs an admin token) that role
// may call, sorted: what WhoAmI tells the console to show.
func (s *Server) adminMethods(role hubapi.Role) []string {
	s.mu.Lock()
	g := s.grpcSrv
	s.mu.Unlock()
	if g == nil {
		return nil
	}
	var out []string
	for svc, info := range g.GetServiceInfo() {
		for _, m := range info.Methods {
			if full := "/" + svc + "/" + m.Name; needsAdmin(full) && role.Allows(methodRole(full)) {
				out = append(out, full)
			}
		}
	}
	slices.Sort(out)
	return out
}

// RoleError is an admin call outside its token's role (PermissionDenied).
// It is counted and recorded as admin_call_refused.
type RoleError struct {
	Actor  string
	Role   hubapi.Role
	Needs  hubapi.Role
	Method string
}

func (e *RoleError) Error() string {
	return fmt.Sprintf("%s (role %s) may not call %s: it needs role %s", e.Actor, e.Role, e.Method, e.Needs)
}

// refuseAdminCall counts a call outside its token's role and records it,
// aggregated per (actor, method) as refused connects are (limits.go), so
// a token that keeps trying cannot fill the disk.
func (s *Server) refuseAdminCall(actor string, role, need hubapi.Role, fullMethod, remote string) {
	s.metrics.adminRefused.WithLabelValues(shortMethod(fullMethod), string(role)).Inc()
	reason := fmt.Sprintf("role %s may not call %s (needs %s)", role, shortMethod(fullMethod), need)
	if _, err := s.rejects.record(rejectKey{kind: kindAdminCall, user: actor, code: fullMethod},
		refusal{reason: reason, remote: remote, role: string(role), needs: string(need)}); err != nil {
		s.log.Error("could not record a refused admin call", "actor", actor, "method", fullMethod, "err", err)
	}
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
	ctx, err := s.authenticate(ctx, info.FullMethod)
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
// service, Backup) and counts them. With RequireClientCert, a client
// stream (Hub.Connect) needs a verified client certificate too.
func (s *Server) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !needsAdmin(info.FullMethod) {
		if s.cfg.RequireClientCert && strings.HasPrefix(info.FullMethod, "/sessionledger.hub.v1.Hub/") {
			if _, ok := callerCert(ss.Context()); !ok {
				s.metrics.authFailures.Inc()
				return toStatus(ErrClientCert)
			}
		}
		return toStatus(handler(srv, ss))
	}
	ctx, err := s.authenticate(ss.Context(), info.FullMethod)
	if err == nil {
		err = handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	}
	err = toStatus(err)
	s.countAdminCall(info.FullMethod, err)
	return err
}

// shortMethod names a method as metrics do: "Admin/Kick", "Audit/Verify".
func shortMethod(fullMethod string) string {
	if i := strings.LastIndex(fullMethod, "/"); i > 0 {
		service := fullMethod[1:i]
		if j := strings.LastIndex(service, "."); j >= 0 {
			service = service[j+1:]
		}
		return service + fullMethod[i:]
	}
	return fullMethod
}

// countAdminCall counts an admin call in sessionledger_admin_calls_total
// by method ("Admin/Kick", "Audit/Verify") and gRPC code. Only registered
// methods reach the interceptors, so the labels stay few.
func (s *Server) countAdminCall(fullMethod string, err error) {
	s.metrics.adminCalls.WithLabelValues(shortMethod(fullMethod), status.Code(err).String()).Inc()
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *ctxStream) Context() context.Context { return c.ctx }

// SetClientKeys replaces the keys client tokens are verified with (a
// reload of the JWK Set or public key file). Sessions already admitted
// keep their tokens; connects and refreshes from then on are checked with
// k. It cannot switch tokens off: without keys at start, identities come
// from Hello, and a running hub does not change that.
func (s *Server) SetClientKeys(k *ClientKeys) error {
	if k == nil {
		return errors.New("no client keys")
	}
	if s.keys.Load() == nil {
		return errors.New("this hub was started without client token keys; restart it to check tokens")
	}
	s.keys.Store(k)
	return nil
}

// tokenInfo is what the hub keeps of a client token: its jti, iat and exp.
type tokenInfo struct {
	id              string
	issued, expires time.Time
}

// pb is the token as events record it (nil for none).
func (t tokenInfo) pb() *eventpb.ClientToken {
	if t.expires.IsZero() {
		return nil
	}
	return &eventpb.ClientToken{Id: t.id, IssuedUnixNano: t.issued.UnixNano(), ExpiresUnixNano: t.expires.UnixNano()}
}

// identity is who a Hello says the client is, and the token it showed.
type identity struct {
	user, device string
	token        tokenInfo
}

// verifyToken checks a client JWT: signed with a key the hub has (HS256
// with the secret; RS256, ES256 or EdDSA with a public key), not expired,
// issued (iat) no later than now, living at most MaxTokenTTL, and with the
// configured issuer and audience. The error wraps ErrUnauthenticated and
// says why.
func (s *Server) verifyToken(raw string) (hubapi.Claims, tokenInfo, error) {
	var c hubapi.Claims
	keys := s.keys.Load()
	if keys == nil {
		return c, tokenInfo{}, fmt.Errorf("%w: this hub takes no tokens", ErrUnauthenticated)
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(keys.algs), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithTimeFunc(s.cfg.Now)}
	if s.cfg.JWTIssuer != "" {
		opts = append(opts, jwt.WithIssuer(s.cfg.JWTIssuer))
	}
	if s.cfg.JWTAudience != "" {
		opts = append(opts, jwt.WithAudience(s.cfg.JWTAudience))
	}
	if _, err := jwt.ParseWithClaims(raw, &c, keys.keyfunc, opts...); err != nil {
		return c, tokenInfo{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	switch {
	case c.Subject == "":
		return c, tokenInfo{}, fmt.Errorf("%w: the token has no sub", ErrUnauthenticated)
	case c.IssuedAt == nil:
		return c, tokenInfo{}, fmt.Errorf("%w: the token has no iat", ErrUnauthenticated)
	}
	// The names a token brings are held to the rules of every name
	// (checkNames: length, no control or bidirectional characters), for a
	// connect and a refresh alike: the jti too, which the connect event
	// records and a revocation names.
	if err := checkNames("user", c.Subject, "device", c.Device, "token jti", c.ID); err != nil {
		return c, tokenInfo{}, err
	}
	t := tokenInfo{id: c.ID, issued: c.IssuedAt.Time, expires: c.ExpiresAt.Time}
	if life := t.expires.Sub(t.issued); life > s.cfg.MaxTokenTTL {
		// A revocation by token id lasts MaxTokenTTL when the token's
		// expiry is not given: a longer-lived token could outlive it.
		return c, tokenInfo{}, fmt.Errorf("%w: the token lives %s (iat to exp); this hub accepts at most %s", ErrUnauthenticated, life, s.cfg.MaxTokenTTL)
	}
	return c, t, nil
}

// identify returns who a Hello is from: from its JWT when the hub has
// client keys, from the Hello itself otherwise.
func (s *Server) identify(user, device, token string) (identity, error) {
	if s.keys.Load() == nil {
		if user == "" {
			return identity{}, invalidf("hello: user is required")
		}
		return identity{user: user, device: device}, nil
	}
	if token == "" {
		return identity{}, ErrUnauthenticated
	}
	c, t, err := s.verifyToken(token)
	if err != nil {
		s.log.Debug("client token refused", "err", err)
		return identity{}, err
	}
	if (user != "" && user != c.Subject) || (device != "" && c.Device != "" && device != c.Device) {
		return identity{}, fmt.Errorf("%w: Hello names another user or device than the token", ErrUnauthenticated)
	}
	if c.Device != "" {
		device = c.Device
	}
	return identity{user: c.Subject, device: device, token: t}, nil
}
