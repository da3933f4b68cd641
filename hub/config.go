package hub

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/projections"
)

// Config configures a Server. Zero values take the defaults in
// setDefaults; Validate reports values that cannot work.
type Config struct {
	// Node names this hubd in the events it records (default "node-1").
	Node string
	// HeartbeatInterval is how often the server pings (default 10s).
	// IdleTimeout ends a session that sent nothing for that long (default
	// 3 heartbeats).
	HeartbeatInterval time.Duration
	IdleTimeout       time.Duration
	// HelloTimeout bounds the wait for the first frame (default 10s).
	HelloTimeout time.Duration
	// Policy is the single-device login policy.
	Policy projections.Policy
	// MaxSessions caps the live sessions of this node (default 100,000).
	MaxSessions int
	// UserConnectsPerMinute caps how often one user may connect (default
	// 120): a token bucket per user refilled at this rate and holding
	// UserConnectBurst (default the smaller of 10 and the rate), so in any
	// minute at most UserConnectsPerMinute + UserConnectBurst connects of
	// one user pass. Over it, connects are refused with ResourceExhausted.
	UserConnectsPerMinute int
	UserConnectBurst      int
	// RejectWindow aggregates connect_rejected events: the first refusal of
	// a (user, code) is recorded at once, the rest of the window as one
	// event with a count (default 10s), within a fixed bound of events per
	// window (see limits.go), so a flood cannot fill the disk.
	RejectWindow time.Duration
	// NotifyBuffer is how many notifications may wait for one session
	// before it is ended as a slow consumer (default 1024).
	NotifyBuffer int
	// GracefulTimeout bounds a graceful end: a client that does not take
	// its Disconnect in time has its connection closed (default 5s).
	GracefulTimeout time.Duration
	// OrphanAfter is how long a session the log shows live on this node,
	// which this node does not hold, may stay so before the node records
	// its end (default 10s). Such a session is a connect whose publish
	// was answered as failed but stored after all (a cluster's stream
	// leader that had not yet noticed it lost its quorum commits it when
	// the quorum is back), or an end whose publish failed.
	OrphanAfter time.Duration
	// ClientFrameRate is how many frames a second a session's client may
	// send (Pong, Ack), in bursts of up to two seconds' worth (default
	// 100). Beyond it the hub reads the session's frames no faster, and
	// the stream's flow control holds the client back: a flood costs the
	// hub neither CPU nor memory.
	ClientFrameRate int
	// ShutdownReconnect and ShutdownJitter make the reconnect advice on
	// shutdown "after ShutdownReconnect + random(0, ShutdownJitter)"
	// (defaults 1s and 5s), so clients do not return all at once.
	ShutdownReconnect time.Duration
	ShutdownJitter    time.Duration
	// ResumeWindow is how long after a session ended it may be resumed
	// (default 2m); RedeliveryLimit caps the notifications redelivered on a
	// resume (default 1000; older ones are not redelivered, and the
	// Welcome says so with redelivery_truncated).
	ResumeWindow    time.Duration
	RedeliveryLimit int
	// ResumeKey signs resume secrets (HMAC-SHA256). hubd keeps it in its
	// data directory so secrets survive a restart; nil: a random key.
	ResumeKey []byte
	// JWTSecret, when set, is the HS256 secret client tokens are checked
	// with. Without it (and without ClientKeys) identities are taken from
	// Hello as sent, which hubd allows only on a loopback listener.
	JWTSecret []byte
	// ClientKeys, when set, are the keys client tokens are checked with
	// (HS256, RS256, ES256, EdDSA; it replaces JWTSecret).
	// Server.SetClientKeys replaces them while the hub runs.
	ClientKeys *ClientKeys
	// JWTIssuer and JWTAudience, when set, must be a client token's iss
	// and one of its aud.
	JWTIssuer, JWTAudience string
	// MaxTokenTTL is the longest a client token may live, iat to exp
	// (default 24h). It bounds revocations: one by token id without the
	// token's expiry lasts this long, one of a user's tokens issued before
	// T lasts until T plus this; after that no token they cover is valid.
	MaxTokenTTL time.Duration
	// NoReconnectWindow is how long a kick with reconnect not allowed
	// holds the kicked sessions' user and device, and their tokens: a
	// fresh connect within it is refused with the kick's reason and event
	// id (default 10m; negative: not at all). A kick with reconnect after
	// D holds them for D. The kick records it, so every node refuses the
	// same connects.
	NoReconnectWindow time.Duration
	// AdminTokens maps admin bearer tokens to the actor recorded for them;
	// each has role admin. Admins lists tokens with their roles. Both may
	// be given; Server.SetAdminTokens replaces them while the hub runs.
	AdminTokens map[string]string
	Admins      []hubapi.AdminToken
	// RequireAdminCert refuses admin and audit calls from a caller without
	// a verified client certificate (hubd --client-ca);
	// RequireClientCert refuses client streams without one too. The gRPC
	// server's TLS configuration must ask for and verify client
	// certificates.
	RequireAdminCert, RequireClientCert bool
	// LostCheck is how often a cluster node looks for other nodes that
	// died holding sessions, and records those sessions' ends as lost
	// (default 1s; only with Ports.Cluster).
	LostCheck time.Duration
	// Metrics is the registry the hub's series go into (default: a new
	// one); hubd adds the ledger's and the projections' to the same.
	Metrics *prometheus.Registry
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock at the edge (ban expiry, idle timeouts); default
	// time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Node == "" {
		c.Node = "node-1"
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 10 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 3 * c.HeartbeatInterval
	}
	if c.HelloTimeout <= 0 {
		c.HelloTimeout = 10 * time.Second
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 100_000
	}
	if c.UserConnectsPerMinute <= 0 {
		c.UserConnectsPerMinute = 120
	}
	if c.UserConnectBurst <= 0 {
		c.UserConnectBurst = min(c.UserConnectsPerMinute, 10)
	}
	if c.RejectWindow <= 0 {
		c.RejectWindow = 10 * time.Second
	}
	if c.NotifyBuffer <= 0 {
		c.NotifyBuffer = 1024
	}
	if c.GracefulTimeout <= 0 {
		c.GracefulTimeout = 5 * time.Second
	}
	if c.OrphanAfter <= 0 {
		c.OrphanAfter = 10 * time.Second
	}
	if c.ClientFrameRate <= 0 {
		c.ClientFrameRate = 100
	}
	if c.ShutdownReconnect <= 0 {
		c.ShutdownReconnect = time.Second
	}
	if c.ShutdownJitter <= 0 {
		c.ShutdownJitter = 5 * time.Second
	}
	if c.ResumeWindow <= 0 {
		c.ResumeWindow = 2 * time.Minute
	}
	if c.RedeliveryLimit <= 0 {
		c.RedeliveryLimit = 1000
	}
	if c.MaxTokenTTL <= 0 {
		c.MaxTokenTTL = 24 * time.Hour
	}
	if c.NoReconnectWindow == 0 {
		c.NoReconnectWindow = 10 * time.Minute
	}
	if len(c.ResumeKey) == 0 {
		c.ResumeKey = make([]byte, 32)
		_, _ = rand.Read(c.ResumeKey)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.LostCheck <= 0 {
		c.LostCheck = time.Second
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
}

// Validate reports a configuration that cannot work.
func (c *Config) Validate() error {
	var errs []error
	if c.IdleTimeout < c.HeartbeatInterval {
		errs = append(errs, fmt.Errorf("idle timeout %s is shorter than the heartbeat interval %s", c.IdleTimeout, c.HeartbeatInterval))
	}
	if c.Policy.MaxPerUser < 0 {
		errs = append(errs, fmt.Errorf("max sessions per user %d is negative", c.Policy.MaxPerUser))
	}
	if len(c.JWTSecret) > 0 && len(c.JWTSecret) < 32 {
		errs = append(errs, fmt.Errorf("JWT secret is %d bytes; want at least 32", len(c.JWTSecret)))
	}
	for _, actor := range c.AdminTokens {
		if actor == "" {
			errs = append(errs, errors.New("admin tokens must name an actor"))
			break
		}
	}
	if err := validAdminTokens(c.adminTokens()); err != nil {
		errs = append(errs, err)
	}
	if c.NoReconnectWindow > hubapi.MaxReconnectAfter {
		errs = append(errs, fmt.Errorf("no-reconnect window %s is longer than the maximum %s", c.NoReconnectWindow, hubapi.MaxReconnectAfter))
	}
	return errors.Join(errs...)
}

// adminTokens is AdminTokens (as admins, in token order) and Admins.
func (c *Config) adminTokens() []hubapi.AdminToken {
	out := slices.Clone(c.Admins)
	for _, tok := range slices.Sorted(maps.Keys(c.AdminTokens)) {
		out = append(out, hubapi.AdminToken{Name: c.AdminTokens[tok], Token: tok, Role: hubapi.RoleAdmin})
	}
	return out
}
