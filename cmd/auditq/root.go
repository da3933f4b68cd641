package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/internal/hubconn"
	"github.com/sessionledger/sessionledger/internal/termtext"
	"github.com/sessionledger/sessionledger/internal/version"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/projections"
)

// Exit codes.
const (
	exitOK = 0
	// exitError: the query could not be answered (no source, I/O, hub
	// errors).
	exitError = 1
	// exitUsage: bad flags or input (malformed time, unknown event type).
	exitUsage = 2
	// exitIntegrity: the log is not intact or the evidence does not hold:
	// verify found a broken chain, a stored tree or a cross-check that
	// disagrees, or a checkpoint the log does not match; a query skipped
	// corrupt records; a proof bundle, a checkpoint's signature or a
	// consistency proof does not verify.
	exitIntegrity = 3
)

// defaultAddr is where hubd listens by default.
const defaultAddr = "127.0.0.1:7070"

// source is what every command queries: an audit.Engine over a ledger file
// or an audit.Client of a running hubd.
type source interface {
	Events(ctx context.Context, f audit.Filter, follow bool, fn func(*ledger.Record) error) error
	SessionsAt(ctx context.Context, t time.Time, f projections.Filter) ([]audit.LiveSession, error)
	BansAt(ctx context.Context, t time.Time, user string) ([]projections.Ban, error)
	RevocationsAt(ctx context.Context, t time.Time, user string) ([]projections.Revocation, error)
	Timeline(ctx context.Context, q audit.TimelineQuery, fn func(audit.TimelineEntry) error) error
	Replay(ctx context.Context, q audit.ReplayQuery, fn func(audit.Step) error) error
	Verify(ctx context.Context, q audit.VerifyQuery, progress func(audit.VerifyProgress)) (audit.VerifyResult, error)
	Stats(ctx context.Context, f audit.Filter) (audit.Stats, error)
	Checkpoint(ctx context.Context) (audit.SignedCheckpoint, error)
	Prove(ctx context.Context, q audit.ProveQuery) (*audit.Bundle, error)
	ConsistencyProof(ctx context.Context, oldSize, newSize uint64) (audit.Consistency, error)
}

var (
	_ source = (*audit.Engine)(nil)
	_ source = (*audit.Client)(nil)
)

// app holds one run's streams, environment and global flags.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	// outTTY and errTTY say whether stdout and stderr are terminals.
	outTTY, errTTY bool
	// probeTimeout bounds the look for a local hubd when no source is given.
	probeTimeout time.Duration
	lockTimeout  time.Duration
	// connectTimeout bounds a connection to a hub (--addr, $AUDITQ_ADDR).
	connectTimeout time.Duration
	// localAddr is where the default source looks for a running hubd
	// (defaultAddr; tests point it elsewhere).
	localAddr string

	db, addr, token, data, tz string
	json, csv                 bool
	// TLS to a hubd: --tls, --ca, and a client certificate for hubd's
	// --client-ca (--cert, --cert-key; not --key, which verify, check-proof
	// and consistency take for the checkpoints' verifier key).
	tls                    bool
	caFile, certFile, keyF string
	loc                    *time.Location
	// dataGiven: --data or $AUDITQ_DATA named the data directory.
	dataGiven bool

	// kind is set by a failing command to choose the exit code.
	kind int
	// tick reports progress from a command's callbacks (progressCtx).
	tick func(seq uint64)
}

func newApp(stdout, stderr io.Writer, getenv func(string) string) *app {
	return &app{
		stdout: stdout, stderr: stderr, getenv: getenv, now: time.Now,
		outTTY: isTerminal(stdout), errTTY: isTerminal(stderr),
		probeTimeout: 700 * time.Millisecond, lockTimeout: 700 * time.Millisecond, connectTimeout: audit.DefaultConnectTimeout,
		localAddr: defaultAddr,
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// usageError marks errors in what the user typed.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// noArgs is the Args of every subcommand: they take flags only.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return usagef("%s takes no arguments, only flags: %q (see %s --help)", cmd.CommandPath(), args[0], cmd.CommandPath())
}

// typedArgs makes the errors of c's and its subcommands' Args validators
// usage errors: they only ever judge the arguments typed. It covers the
// commands cobra adds (help, completion), whose validators return plain
// errors.
func typedArgs(c *cobra.Command) {
	if v := c.Args; v != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := v(cmd, args); err != nil {
				var ue usageError
				if errors.As(err, &ue) {
					return err
				}
				return usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		typedArgs(sub)
	}
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "auditq",
		Short: "Compliance queries, incident replay and tamper verification over a sessionledger ledger",
		Long: `auditq reads a sessionledger ledger: every connect, notification, kick, ban,
reconnect and disconnect that hubd recorded, hash-chained.

Sources (one of):
  --db FILE       a ledger file or a backup, opened read-only (not while hubd runs on it)
  --addr H:P      a running hubd's audit API ($AUDITQ_ADDR); admin token from
                  --token, $HUBD_ADMIN_TOKEN or DATA/admin.token (--data,
                  $AUDITQ_DATA, default ./data); --tls, --ca, and --cert and
                  --cert-key when hubd wants a client certificate (--client-ca).
                  The token needs the auditor role at least.
  (neither)       follows the data directory: DATA/ledger.db itself when no
                  hubd has it open, else the hubd running on DATA (at the
                  address it wrote to DATA/hubd.addr); with no ledger in the
                  default ./data, the local hubd at ` + defaultAddr + ` if one answers

Times: RFC3339 (2026-03-01T10:00:00Z), a date or date-time in --tz, "now",
or a duration ago (90s, 15m, 2h, 3d). Shown in RFC3339, UTC unless --tz.

Exit codes: 0 ok, 1 error, 2 bad input, 3 log not intact or evidence does
not hold (verify, check-proof or consistency failed, or corrupt records were
skipped).`,
		Example: `  auditq events --user mallory --type kick_requested      # who kicked mallory, and why
  auditq sessions --at 2026-03-01T10:15:00Z                # who was connected then
  auditq verify                                            # is the log intact?
  auditq verify --checkpoint saved/ --key hubd.vkey        # ... and the log the saved checkpoints signed?
  auditq --db backup.db timeline --session s-42            # a session's story, from a backup`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.dataGiven = cmd.Flags().Changed("data") || a.getenv("AUDITQ_DATA") != ""
			if a.json && a.csv {
				return usagef("--json and --csv exclude each other")
			}
			a.loc = time.UTC
			if a.tz != "" {
				loc, err := time.LoadLocation(a.tz)
				if err != nil {
					return usagef("unknown time zone %q for --tz (use an IANA name like Europe/Berlin, UTC or Local)", a.tz)
				}
				a.loc = loc
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.db, "db", "", "ledger file or backup to read (read-only)")
	pf.StringVar(&a.addr, "addr", "", "address of a running hubd's audit API (env AUDITQ_ADDR; default: try "+defaultAddr+")")
	pf.StringVar(&a.token, "token", "", "admin token for --addr (default $HUBD_ADMIN_TOKEN, else DATA/admin.token)")
	pf.StringVar(&a.data, "data", envOr(a.getenv, "AUDITQ_DATA", "./data"), "hubd's data folder: admin.token and ledger.db (env AUDITQ_DATA)")
	pf.StringVar(&a.tz, "tz", "", "time zone to show and read times in (default UTC)")
	pf.BoolVar(&a.json, "json", false, "JSON lines")
	pf.BoolVar(&a.csv, "csv", false, "CSV with a header row")
	pf.BoolVar(&a.tls, "tls", false, "connect to --addr with TLS")
	pf.StringVar(&a.caFile, "ca", "", "PEM CA certificate for --tls (default: system roots)")
	pf.StringVar(&a.certFile, "cert", "", "PEM client certificate for hubd's --client-ca; implies --tls")
	pf.StringVar(&a.keyF, "cert-key", "", "PEM private key of --cert")
	root.Version = version.Line("auditq")
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usagef("%v (see %s --help)", err, c.CommandPath())
	})
	root.AddCommand(a.eventsCommand(), a.exportCommand(), a.sessionsCommand(), a.bansCommand(), a.revocationsCommand(),
		a.timelineCommand(), a.replayCommand(), a.verifyCommand(), a.statsCommand(),
		a.checkpointCommand(), a.keyCommand(), a.proveCommand(), a.checkProofCommand(), a.consistencyCommand())
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	typedArgs(root)
	return root
}

// run executes the command line and returns the exit code.
func (a *app) run(ctx context.Context, args []string) int {
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	// Find fails only on the words typed, an unknown command: Execute
	// would fail the same way, with a plain error.
	_, _, err := root.Find(args)
	if err != nil {
		err = usageError{err}
	} else {
		err = root.ExecuteContext(ctx)
	}
	if err == nil {
		return a.kind
	}
	fmt.Fprintf(a.stderr, "auditq: %s\n", oneLine(err))
	// Flag errors (SetFlagErrorFunc) and argument errors (typedArgs) come
	// back as usageError. Cobra has other errors, all plain, for what this
	// command line does not use (required flags, flag groups): they fall to
	// exitError.
	var ue usageError
	var ce *audit.CorruptError
	switch {
	case errors.As(err, &ue), errors.Is(err, audit.ErrInvalid):
		return exitUsage
	case errors.As(err, &ce), errors.Is(err, ledger.ErrCorrupt), errors.Is(err, audit.ErrCheckFailed):
		return exitIntegrity
	default:
		return exitError
	}
}

func oneLine(err error) string {
	return termtext.Line(strings.Join(strings.Fields(err.Error()), " "))
}

// parseTime reads a time flag value.
func (a *app) parseTime(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := audit.ParseTime(v, a.now(), a.loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s: %w", flag, err)
	}
	return t, nil
}

// open returns the source the flags name and a function that releases it.
func (a *app) open(ctx context.Context) (source, func(), error) {
	return a.openSource(ctx, false)
}

// openLive is open for --follow, which needs a running hubd: a ledger file
// does not grow while auditq has it open, and holding it open would keep
// hubd from starting on it.
func (a *app) openLive(ctx context.Context) (source, func(), error) {
	return a.openSource(ctx, true)
}

func (a *app) openSource(ctx context.Context, live bool) (source, func(), error) {
	if a.db != "" && a.addr != "" {
		return nil, nil, usagef("give --db or --addr, not both")
	}
	if a.db != "" {
		if live {
			return nil, nil, usagef("--follow needs a running hubd (--addr): a file opened with --db does not grow")
		}
		return a.openFile(a.db)
	}
	if a.addr != "" {
		return a.dial(a.addr, a.tls)
	}
	if addr := a.getenv("AUDITQ_ADDR"); addr != "" {
		return a.dial(addr, a.tls) // as --addr: a hub named is not probed, and no file stands in for it
	}
	// Neither: follow the data directory. Its ledger, if no hubd has it
	// open; else the hubd that has it, where it said it listens.
	path := filepath.Join(a.data, "ledger.db")
	if _, err := os.Stat(path); err == nil {
		src, closeFn, err := a.openFile(path)
		switch {
		case err == nil && live:
			closeFn()
			return nil, nil, usagef("--follow needs a running hubd and none has %s open: give --addr HOST:PORT (a ledger file does not grow while auditq reads it)", path)
		case err == nil:
			a.say("reading %s (no hubd has it open)", path)
			return src, closeFn, nil
		case !errors.Is(err, errLocked):
			return nil, nil, err
		}
		return a.dialDataHub(ctx, path)
	}
	if a.dataGiven {
		return nil, nil, fmt.Errorf("no ledger at %s: is --data hubd's data directory? (or give --addr HOST:PORT or --db FILE)", path)
	}
	// The default ./data holds no ledger: the local hubd, if one answers.
	if a.hubAnswers(ctx, a.localAddr, a.tls) {
		a.say("no ledger in %s; reading from the running hubd at %s", a.data, a.localAddr)
		return a.dial(a.localAddr, a.tls)
	}
	if live {
		return nil, nil, usagef("--follow needs a running hubd and none answers at %s: give --addr HOST:PORT (a ledger file does not grow while auditq reads it)", a.localAddr)
	}
	return nil, nil, fmt.Errorf("no hubd answers at %s and there is no ledger at %s: give --addr HOST:PORT, --db FILE or --data DIR", a.localAddr, path)
}

// dialDataHub reaches the hubd that has the ledger at path open: at the
// address it wrote beside it (DATA/hubd.addr), or the local default.
func (a *app) dialDataHub(ctx context.Context, path string) (source, func(), error) {
	addr, tlsOn, err := hubapi.ReadAddrFile(a.data)
	why := "the address it wrote to " + filepath.Join(a.data, hubapi.AddrFile)
	if err != nil {
		addr, tlsOn, why = a.localAddr, a.tls, "the default address (it wrote no "+hubapi.AddrFile+")"
	}
	tlsOn = tlsOn || a.tls
	if tlsOn && !a.tls && a.caFile == "" {
		// Its certificate may not be one the system trusts: say so rather
		// than fail on the handshake.
		a.say("the hubd on %s serves TLS; using the system's roots (give --ca for another)", a.data)
	}
	if !a.hubAnswers(ctx, addr, tlsOn) {
		return nil, nil, fmt.Errorf("%s is locked by a running hubd, which does not answer at %s (%s): give --addr HOST:PORT, or read a backup with --db FILE", path, addr, why)
	}
	a.say("%s is in use by the running hubd; reading from it at %s (%s)", path, addr, why)
	return a.dial(addr, tlsOn)
}

// say tells the user, on a terminal, which source auditq reads.
func (a *app) say(format string, args ...any) {
	if a.errTTY {
		fmt.Fprintf(a.stderr, "auditq: "+format+"\n", args...)
	}
}

// errLocked marks openFile's error for a ledger a running hubd holds.
var errLocked = errors.New("ledger locked by another process")

func (a *app) openFile(path string) (source, func(), error) {
	// The ledger's own open reports an empty file or a directory
	// obscurely, and faults on a truncated copy: look first.
	if err := audit.CheckFile(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("no ledger file at %s", path)
	} else if err != nil {
		return nil, nil, err // it names the file and what is wrong with it
	}
	st, err := ledger.Open(path, &ledger.Options{ReadOnly: true, LockTimeout: a.lockTimeout})
	switch {
	case errors.Is(err, ledger.ErrLocked):
		return nil, nil, fmt.Errorf("%w: %s is locked by another process, probably a running hubd: query the hub with --addr HOST:PORT (default %s), or read a backup with --db BACKUP", errLocked, path, defaultAddr)
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("no ledger file at %s", path)
	case errors.Is(err, ledger.ErrNotLedger):
		return nil, nil, fmt.Errorf("%s is not a sessionledger ledger file", path)
	case err != nil:
		return nil, nil, err
	}
	return audit.NewEngine(st), func() { _ = st.Close() }, nil
}

// envOr is the environment variable name, or def when it is unset or empty.
func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// adminToken finds the token for a hub: --token, $HUBD_ADMIN_TOKEN, or
// the one hubd wrote to DATA/admin.token. Without one it says why, in the
// words hubctl uses: every Audit call needs one, so auditq does not ask.
func (a *app) adminToken() (string, error) {
	return hubconn.AdminToken(a.data, a.token, a.getenv("HUBD_ADMIN_TOKEN"))
}

// tlsFlags is what --tls (or on: the hubd's address file says it serves
// TLS), --ca, --cert and --cert-key ask for, as hubctl's.
func (a *app) tlsFlags(on bool) hubconn.TLS {
	return hubconn.TLS{On: on, CAFile: a.caFile, CertFile: a.certFile, KeyFile: a.keyF, KeyFlag: "--cert-key"}
}

func (a *app) dial(addr string, tlsOn bool) (source, func(), error) {
	tok, err := a.adminToken()
	if err != nil {
		return nil, nil, err
	}
	creds, err := a.tlsFlags(tlsOn).Credentials()
	if err != nil {
		return nil, nil, usageError{err}
	}
	c, err := audit.NewClient(addr, tok, grpc.WithTransportCredentials(creds), audit.WithConnectTimeout(a.connectTimeout))
	if err != nil {
		return nil, nil, usagef("--addr %s: %v", addr, err)
	}
	return c, func() { _ = c.Close() }, nil
}

// hubAnswers reports whether something speaking gRPC answers at addr
// within probeTimeout (hubd serves the health service).
func (a *app) hubAnswers(ctx context.Context, addr string, tlsOn bool) bool {
	creds, err := a.tlsFlags(tlsOn).Credentials()
	if err != nil {
		creds = insecure.NewCredentials() // the flags' mistake is reported by dial
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, a.probeTimeout)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	switch status.Code(err) {
	case codes.OK, codes.Unimplemented, codes.Unauthenticated, codes.PermissionDenied, codes.NotFound:
		return true
	default:
		return false
	}
}

// seqOrTime reads a --from/--to of verify: a seq number or a time.
func (a *app) seqOrTime(flag, v string) (uint64, time.Time, error) {
	if v == "" {
		return 0, time.Time{}, nil
	}
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		if n == 0 {
			return 0, time.Time{}, usagef("--%s 0: seqs start at 1", flag)
		}
		return n, time.Time{}, nil
	}
	t, err := a.parseTime(flag, v)
	return 0, t, err
}
