// Command hubctl talks to a running hubd: it holds a client session
// (connect), acts as an operator (kick, ban, unban, notify, sessions) and
// mints client tokens. See docs/operations.md and docs/api.md.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/internal/hubconn"
	"github.com/sessionledger/sessionledger/internal/termtext"
	"github.com/sessionledger/sessionledger/internal/version"
)

// Exit codes. connect has its own for the ways a session ends.
const (
	exitOK         = 0
	exitFailure    = 1 // the call failed (server error, unreachable)
	exitUsage      = 2 // bad usage: a flag, an unknown command, a stray argument
	exitKicked     = 3 // connect: the session was kicked
	exitRejected   = 4 // connect: banned, or the connect/resume was refused
	exitSuperseded = 5 // connect: a newer login replaced the session
	exitLost       = 6 // connect: the connection was lost (server gone, aborted)
	// exitOutcomeUnknown: a cluster's log may still record the action the
	// call asked for (Unavailable with OUTCOME_UNKNOWN): a script must not
	// simply retry it.
	exitOutcomeUnknown = 7
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// globals are the flags every command takes.
type globals struct {
	addr     string
	dataDir  string
	token    string
	timeout  time.Duration
	tls      bool
	caFile   string
	certFile string
	keyFile  string
}

// usageError marks errors that exit with exitUsage.
type usageError struct{ error }

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "hubctl: %s\n", termtext.Line(ee.err.Error()))
		}
		return ee.code
	}
	// Errors can carry a server's text (a reason, a name): one line, with
	// nothing in it a terminal acts on.
	fmt.Fprintf(stderr, "hubctl: %s\n", termtext.Line(err.Error()))
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailure
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "hubctl",
		Short: "Operate a running hubd: hold a session, kick, ban, revoke, notify, list sessions, back up, print the checkpoint verifier key",
		Long: `hubctl talks to a running hubd over gRPC.

By default it reaches the local hubd (127.0.0.1:7070) and reads the admin
token from ./data/admin.token, which hubd creates on first start. Set
HUBCTL_ADDR, HUBCTL_DATA or HUBD_ADMIN_TOKEN to change the defaults.

Exit codes: 0 ok, 1 the call failed, 2 bad usage; connect also exits 3
kicked, 4 banned or refused, 5 superseded, 6 connection lost.`,
		Example: `  hubctl connect --user alice --device phone
  hubctl kick --user alice --reason "password changed" --no-reconnect
  hubctl sessions --json`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		// run prefixes "hubctl: "; name the command without the program.
		if c.HasParent() {
			return usageError{fmt.Errorf("%s: %w (see %s --help)", strings.TrimPrefix(c.CommandPath(), "hubctl "), err, c.CommandPath())}
		}
		return usageError{fmt.Errorf("%w (see hubctl --help)", err)}
	})
	root.Version = version.Line("hubctl")
	root.SetVersionTemplate("{{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&g.addr, "addr", envOr("HUBCTL_ADDR", "127.0.0.1:7070"), "hubd gRPC address (env HUBCTL_ADDR)")
	pf.StringVar(&g.dataDir, "data", envOr("HUBCTL_DATA", "./data"), "hubd's data directory, where the admin token is read from (env HUBCTL_DATA)")
	// --data-dir was the way around notify's --data (then the payload,
	// now --payload): it still works for one release, and says so.
	pf.StringVar(&g.dataDir, "data-dir", envOr("HUBCTL_DATA", "./data"), "deprecated: use --data (kept for one release)")
	_ = pf.MarkHidden("data-dir")
	root.PersistentPreRun = func(cmd *cobra.Command, _ []string) {
		if f := cmd.Flags().Lookup("data-dir"); f != nil && f.Changed {
			fmt.Fprintln(cmd.ErrOrStderr(), "hubctl: --data-dir is deprecated and goes in the next release: use --data (notify's payload is --payload now, so --data means the data directory for every command)")
		}
	}
	pf.StringVar(&g.token, "token", os.Getenv("HUBD_ADMIN_TOKEN"), "admin bearer token (env HUBD_ADMIN_TOKEN, as for auditq; default: read from DATA/admin.token)")
	pf.DurationVar(&g.timeout, "timeout", 10*time.Second, "time limit for each call")
	pf.BoolVar(&g.tls, "tls", false, "connect with TLS")
	pf.StringVar(&g.caFile, "ca", "", "PEM CA certificate for --tls (default: system roots)")
	pf.StringVar(&g.certFile, "cert", "", "PEM client certificate for mutual TLS (hubd --client-ca); implies --tls")
	pf.StringVar(&g.keyFile, "key", "", "PEM private key of --cert")

	root.AddCommand(
		newConnect(g),
		newKick(g), newBan(g), newUnban(g), newNotify(g), newRevoke(g), newDrain(g),
		newSessions(g), newSession(g), newCluster(g), newBackup(g),
		newToken(), newAdminToken(g),
		newKey(g),
	)
	// Arguments cobra rejects (an unknown command, a stray argument) are
	// bad usage, exit 2 like a bad flag. Cobra returns them as plain
	// errors, so the validators are wrapped to mark them, rather than
	// recognising cobra's messages afterwards. The root needs its own
	// validator and a RunE for it to run: without them cobra reports an
	// unknown command from its own lookup, unmarked.
	root.Args = usageArgs(unknownCommand)
	root.SuggestionsMinimumDistance = 2
	root.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	for _, c := range root.Commands() {
		if c.Args != nil {
			c.Args = usageArgs(c.Args)
		}
	}
	return root
}

// noArgs is the Args of every command that takes only flags: a word that
// is no flag is a stray argument (cobra's own NoArgs calls it an unknown
// command).
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return fmt.Errorf("stray argument %q; %s takes only flags", args[0], cmd.Name())
}

// unknownCommand refuses any argument to the root command: it can only be
// a command hubctl does not have.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	err := fmt.Errorf("unknown command %q", args[0])
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		err = fmt.Errorf("unknown command %q (did you mean %s?)", args[0], strings.Join(s, " or "))
	}
	return err
}

// usageArgs marks the errors of an argument validator as bad usage.
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		err := v(cmd, args)
		switch {
		case err == nil:
			return nil
		case cmd.HasParent():
			return usageError{fmt.Errorf("%s: %w (see %s --help)", cmd.Name(), err, cmd.CommandPath())}
		default:
			return usageError{fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())}
		}
	}
}

// tlsConfig is the TLS configuration --tls, --ca, --cert and --key ask
// for (nil: plaintext), as auditq's. connect hands it to hub/client, the
// admin commands to dial.
func (g *globals) tlsConfig() (*tls.Config, error) {
	cfg, err := g.tlsFlags().Config()
	if err != nil {
		return nil, usageError{err}
	}
	return cfg, nil
}

// tlsFlags is what --tls, --ca, --cert and --key say.
func (g *globals) tlsFlags() hubconn.TLS {
	return hubconn.TLS{On: g.tls, CAFile: g.caFile, CertFile: g.certFile, KeyFile: g.keyFile, KeyFlag: "--key"}
}

// dial opens a client connection to hubd for the admin commands (one
// call each; connect lets hub/client dial its own).
func (g *globals) dial() (*grpc.ClientConn, error) {
	creds, err := g.tlsFlags().Credentials()
	if err != nil {
		return nil, usageError{err}
	}
	conn, err := grpc.NewClient(g.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, usageError{fmt.Errorf("--addr %q: %w", g.addr, err)}
	}
	return conn, nil
}

// adminCtx returns a context with the admin token (--token, whose default
// is $HUBD_ADMIN_TOKEN, else DATA/admin.token) and the call timeout.
func (g *globals) adminCtx() (context.Context, context.CancelFunc, error) {
	tok, err := hubconn.AdminToken(g.dataDir, g.token)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), cancel, nil
}

// adminTokenPath is the admin token file in --data.
func adminTokenPath(g *globals) string { return filepath.Join(g.dataDir, hubapi.AdminTokenFile) }

// callError turns a gRPC error into one line: "Code: message". One whose
// outcome the cluster's log cannot tell yet exits with exitOutcomeUnknown.
func callError(what string, err error) error {
	if s, ok := status.FromError(err); ok {
		line := fmt.Errorf("%s: %s: %s", what, s.Code(), s.Message())
		if _, unknown := hubapi.OutcomeUnknown(err); unknown {
			return &exitError{code: exitOutcomeUnknown, err: line}
		}
		return line
	}
	return fmt.Errorf("%s: %w", what, err)
}
