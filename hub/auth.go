package hub

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// AdminTokenFile is the name of the admin token file in hubd's data
// directory. Each non-comment line is "actor token" (or just a token, whose
// actor is "admin").
const AdminTokenFile = "admin.token"

// LoadOrCreateAdminTokens reads dir/admin.token, creating it (mode 0600,
// one random token for actor "admin") when it does not exist. created says
// whether it did. The file appears complete or not at all (see
// createOnce); if another process creates it first, that one is read.
func LoadOrCreateAdminTokens(dir string) (tokens map[string]string, created bool, err error) {
	path := filepath.Join(dir, AdminTokenFile)
	tokens, err = ReadAdminTokens(path)
	if err == nil {
		return tokens, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	tok := randomToken()
	content := fmt.Sprintf("# sessionledger admin tokens: one \"actor token\" per line\nadmin %s\n", tok)
	if created, err = createOnce(path, []byte(content)); err != nil {
		return nil, false, fmt.Errorf("create admin token: %w", err)
	}
	if !created {
		tokens, err = ReadAdminTokens(path)
		return tokens, false, err
	}
	return map[string]string{tok: "admin"}, true, nil
}

// ReadAdminTokens parses an admin token file into token → actor. It
// refuses a file that other users can read.
func ReadAdminTokens(path string) (map[string]string, error) {
	lines, err := readAdminTokenLines(path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(lines))
	for _, l := range lines {
		out[l.token] = l.actor
	}
	return out, nil
}

type adminTokenLine struct{ actor, token string }

// readAdminTokenLines parses an admin token file, in file order.
func readAdminTokenLines(path string) ([]adminTokenLine, error) {
	b, err := ReadSecretFile(path)
	if err != nil {
		return nil, err
	}
	var out []adminTokenLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		switch len(fields) {
		case 1:
			out = append(out, adminTokenLine{"admin", fields[0]})
		case 2:
			out = append(out, adminTokenLine{fields[0], fields[1]})
		default:
			return nil, fmt.Errorf("admin token file %s: a line must be \"actor token\"", path)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("admin token file %s holds no token", path)
	}
	return out, nil
}

// FirstAdminToken returns the first token in the admin token file at path
// (in file order), for hubctl and auditq: the one hubd created, unless an
// operator put another line first.
func FirstAdminToken(path string) (string, error) {
	lines, err := readAdminTokenLines(path)
	if err != nil {
		return "", err
	}
	return lines[0].token, nil
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

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

// Claims are the client JWT claims: sub is the user.
type Claims struct {
	Device string `json:"device,omitempty"`
	jwt.RegisteredClaims
}

// MintToken makes a client JWT (HS256) for user on device, valid for ttl.
func MintToken(secret []byte, user, device string, ttl time.Duration, now time.Time) (string, error) {
	if user == "" {
		return "", errors.New("mint token: empty user")
	}
	c := Claims{Device: device, RegisteredClaims: jwt.RegisteredClaims{
		Subject: user, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

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
	var c Claims
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
