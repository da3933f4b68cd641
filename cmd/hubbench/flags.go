package main

// Flags and the combinations hubbench accepts.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sessionledger/sessionledger/internal/version"
)

type options struct {
	sessions    int
	perConn     int
	concurrency int
	kicks       int
	fanouts     int
	storm       bool
	hubdPath    string
	data        string
	jsonOut     string
	hubdArgs    string
	profile     string
	transport   string        // "grpc" or "ws"
	wsAck       string        // "pong", "each" or a duration
	wsAckEvery  time.Duration // from wsAck: -1 with pongs, 0 each, > 0 that long after the first unacked

	// Cluster mode: --cluster N starts N nodes, --addrs uses running ones.
	cluster          int
	addrs            []string
	tokenFile        string
	clusterHeartbeat time.Duration
	lostAfter        time.Duration
	killNode         bool
}

// clustered reports whether hubbench runs against several nodes.
func (o *options) clustered() bool { return o.cluster > 0 || len(o.addrs) > 0 }

// nodes is how many hubd nodes the run uses.
func (o *options) nodes() int {
	switch {
	case o.cluster > 0:
		return o.cluster
	case len(o.addrs) > 0:
		return len(o.addrs)
	}
	return 1
}

// connections is how many client connections hold the sessions: in
// cluster mode every session dials its own (hub/client moves to another
// node only on a connection of its own).
func (o *options) connections() int {
	if o.clustered() {
		return o.sessions
	}
	return (o.sessions + o.perConn - 1) / o.perConn
}

// onOtherNodes is how many sessions land on nodes other than the first
// (session i starts at node i % N): the targets of cross-node kicks.
func (o *options) onOtherNodes() int {
	n := o.nodes()
	if n < 2 {
		return o.sessions
	}
	return o.sessions - (o.sessions+n-1)/n
}

// parseOptions reads the command line. A bad flag or a bad combination is
// one error naming what is wrong (hubbench exits 2 with it); --help and
// --version return an errHelp with what to print.
func parseOptions(args []string) (options, error) {
	var o options
	var addrs string
	var help, showVersion bool
	fs := pflag.NewFlagSet("hubbench", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are one line, from run
	fs.Usage = func() {}
	fs.SortFlags = false
	fs.BoolVarP(&help, "help", "h", false, "print this help and exit")
	fs.BoolVar(&showVersion, "version", false, "print the version (from the build information) and exit")
	fs.IntVar(&o.sessions, "sessions", 20000, "concurrent sessions to hold")
	fs.IntVar(&o.perConn, "per-conn", 100, "sessions sharing one client connection (HTTP/2 streams; client.WithConn); 1: one connection per session, as devices connect (each a descriptor in hubbench and one in hubd: N up to the open-file limit less 64); single mode only: in cluster mode every session dials its own")
	fs.IntVar(&o.concurrency, "concurrency", 64, "connects in flight while ramping up")
	kicks := fs.String("kicks", "auto", "kicks to time (auto: the smaller of 1000 and --sessions - 1; in cluster mode of 1000 and the sessions on the other nodes)")
	fs.IntVar(&o.fanouts, "fanouts", 5, "notify-all rounds to time")
	fs.BoolVar(&o.storm, "storm", true, "end with a reconnect storm: SIGTERM hubd, restart it, time until every session resumed (--storm=false skips it; single mode only)")
	fs.StringVar(&o.hubdPath, "hubd", "", "hubd binary (default: build ./cmd/hubd into a temporary directory)")
	fs.StringVar(&o.data, "data", "", "hubd data directory (default: a temporary one, removed at the end); with --cluster, one subdirectory per node")
	fs.StringVar(&o.jsonOut, "json", "", "also write the result as JSON to this file")
	fs.StringVar(&o.hubdArgs, "hubd-args", "", "extra hubd flags, space separated (given to every node)")
	fs.StringVar(&o.profile, "profile", "", "save profiles into this directory (go tool pprof): hubd's heap and goroutines with every session connected, and CPU of hubd (every node) and of hubbench's clients during the connects, kicks and fan-out")
	fs.StringVar(&o.transport, "transport", "grpc", "how sessions connect: grpc (hub/client, --per-conn sessions per connection) or ws (one WebSocket connection each, subprotocol sessionledger.v1+proto; --per-conn is 1; single mode only)")
	fs.StringVar(&o.wsAck, "ws-ack", "pong", "with --transport ws, when clients ack (cumulatively): pong (the highest with each Pong, as the JavaScript client does), each (one per notification, as hub/client), or a duration after the first unacked notification")
	fs.IntVar(&o.cluster, "cluster", 0, "cluster mode: start N hubd nodes (N >= 2) with embedded NATS servers on loopback, sessions spread over them, kicks across nodes")
	fs.StringVar(&addrs, "addrs", "", "cluster mode against running nodes: their gRPC addresses, HOST:PORT,... (admin token from --token-file)")
	fs.StringVar(&o.tokenFile, "token-file", "", "with --addrs: the cluster's admin token file (the admin.token of any node)")
	fs.DurationVar(&o.clusterHeartbeat, "cluster-heartbeat", time.Second, "with --cluster: every node's --cluster-heartbeat")
	fs.DurationVar(&o.lostAfter, "lost-after", 0, "with --cluster: every node's --lost-after (default hubd's: 3 heartbeats)")
	fs.BoolVar(&o.killNode, "kill-node", false, "with --cluster (3 or more): end by SIGKILLing the last node; time until the survivors recorded its sessions lost and its clients were welcomed elsewhere")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%v (see hubbench --help)", err)
	}
	switch {
	case help:
		return o, errHelp{usageHead + fs.FlagUsages()}
	case showVersion:
		return o, errHelp{version.Line("hubbench") + "\n"}
	}
	given := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { given[f.Name] = true })
	if addrs != "" {
		o.addrs = strings.Split(addrs, ",")
		for i := range o.addrs {
			o.addrs[i] = strings.TrimSpace(o.addrs[i])
		}
	}
	return o, o.validate(fs.Args(), *kicks, given)
}

// validate checks the flags and their combinations and fills in the
// defaults that depend on others; it returns the first problem.
func (o *options) validate(args []string, kicks string, given map[string]bool) error {
	if len(args) > 0 {
		return fmt.Errorf("stray argument %q: hubbench takes only flags (see hubbench --help)", args[0])
	}
	switch o.wsAck {
	case "pong":
		o.wsAckEvery = -1
	case "each":
		o.wsAckEvery = 0
	default:
		d, err := time.ParseDuration(o.wsAck)
		if err != nil || d <= 0 {
			return fmt.Errorf("--ws-ack %q: want pong, each or a positive duration (see hubbench --help)", o.wsAck)
		}
		o.wsAckEvery = d
	}
	switch o.transport {
	case "grpc":
	case "ws":
		o.perConn = 1
	default:
		return fmt.Errorf("--transport %q: want grpc or ws (see hubbench --help)", o.transport)
	}
	switch {
	case kicks == "auto":
		o.kicks = -1 // filled in below, once the mode is known
	default:
		n, err := strconv.Atoi(kicks)
		if err != nil || n < 0 {
			return fmt.Errorf("--kicks %q: want a number or auto (see hubbench --help)", kicks)
		}
		o.kicks = n
	}
	// The mode.
	if given["cluster"] && given["addrs"] {
		return errors.New("--cluster starts a cluster and --addrs uses a running one: give one of them")
	}
	if given["cluster"] && (o.cluster < 2 || o.cluster > maxClusterNodes) {
		return fmt.Errorf("--cluster %d: want 2 to %d nodes (without --cluster hubbench runs one hubd)", o.cluster, maxClusterNodes)
	}
	if given["addrs"] {
		if len(o.addrs) < 2 {
			return fmt.Errorf("--addrs %q: want the addresses of 2 or more nodes, HOST:PORT,HOST:PORT", strings.Join(o.addrs, ","))
		}
		seen := map[string]bool{}
		for _, a := range o.addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return fmt.Errorf("--addrs: %q is not HOST:PORT", a)
			}
			if seen[a] {
				return fmt.Errorf("--addrs: %s is listed twice", a)
			}
			seen[a] = true
		}
		if o.tokenFile == "" {
			return errors.New("--addrs needs --token-file: the cluster's admin token file (any node's admin.token)")
		}
		for _, f := range []string{"hubd", "data", "hubd-args", "profile"} {
			if given[f] {
				return fmt.Errorf("--%s is for the hubd nodes hubbench starts; with --addrs it starts none", f)
			}
		}
	}
	if given["token-file"] && !given["addrs"] {
		return errors.New("--token-file goes with --addrs (hubbench reads the token of the nodes it starts from their data)")
	}
	for _, f := range []string{"cluster-heartbeat", "lost-after", "kill-node"} {
		if given[f] && !given["cluster"] {
			return fmt.Errorf("--%s needs --cluster (it concerns the nodes hubbench starts)", f)
		}
	}
	if o.clustered() {
		if o.transport == "ws" {
			return errors.New("--transport ws is for single mode: in cluster mode sessions are hub/client clients, which move to another node when theirs is gone")
		}
		if given["per-conn"] {
			return errors.New("--per-conn is for single mode: in cluster mode every session dials its own connection, which the client moves to another node when its node is gone")
		}
		if given["storm"] {
			return errors.New("--storm is for single mode (it restarts the one hubd); cluster mode skips it (--kill-node kills a node instead)")
		}
		o.perConn, o.storm = 1, false
	}
	if o.killNode && o.cluster < 3 {
		return fmt.Errorf("--kill-node needs --cluster 3 or more: with %d nodes the stream loses its quorum when one dies, and nobody can record its sessions lost", o.cluster)
	}
	if o.cluster > 0 {
		if o.clusterHeartbeat <= 0 {
			return fmt.Errorf("--cluster-heartbeat %s: want a positive duration", o.clusterHeartbeat)
		}
		if o.lostAfter != 0 && o.lostAfter < 2*o.clusterHeartbeat {
			return fmt.Errorf("--lost-after %s: want 0 (3 heartbeats) or at least two heartbeats (%s)", o.lostAfter, 2*o.clusterHeartbeat)
		}
	}
	// The sizes.
	if o.sessions <= 0 || o.perConn <= 0 || o.concurrency <= 0 || o.fanouts < 0 {
		return errors.New("--sessions, --per-conn and --concurrency must be positive, --fanouts 0 or more")
	}
	targets := o.sessions - 1 // a kick's target, with the others live
	what := fmt.Sprintf("--sessions - 1 = %d", targets)
	if o.clustered() {
		targets = o.onOtherNodes()
		what = fmt.Sprintf("the %d sessions on nodes other than the first (every kick goes through the first node to a session on another)", targets)
	}
	if o.kicks == -1 {
		o.kicks = min(1000, targets)
	}
	if o.kicks < 0 || o.kicks > targets {
		return fmt.Errorf("--kicks %d: want 0 up to %s (each kick takes another session)", o.kicks, what)
	}
	return nil
}

// effectiveLostAfter is the --lost-after the nodes run with.
func (o *options) effectiveLostAfter() time.Duration {
	if o.lostAfter > 0 {
		return o.lostAfter
	}
	return 3 * o.clusterHeartbeat
}
