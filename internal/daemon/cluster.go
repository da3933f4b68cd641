package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/internal/atomicfile"
	"github.com/sessionledger/sessionledger/ledger/cluster"
)

// InstanceFile names the file in the data directory that tells this data
// directory apart from another one under the same node name.
const InstanceFile = "node.id"

// connectCluster connects this node to the cluster (cluster.Connect): the
// shared files and the log id are settled when it returns; Join follows
// once the ledger is open.
func (d *Daemon) connectCluster(ctx context.Context) error {
	cc := *d.cfg.Cluster
	cc.Node = d.cfg.Hub.Node
	if cc.Node == "" {
		return errors.New("a cluster node needs a name: give --node")
	}
	id, err := instanceID(d.cfg.Data)
	if err != nil {
		return err
	}
	cc.InstanceID, cc.Logger = id, d.log.With("component", "cluster")
	// Every node must sign resume secrets with the same key, so clients
	// can resume on any node (and accept the same admin tokens, so
	// operators can use any node: syncAdminTokens). Given in the
	// configuration (tests), the caller shares it.
	if d.cfg.Hub.ResumeKey == nil {
		cc.Shared = []cluster.SharedFile{
			{Key: "resume.key", Path: filepath.Join(d.cfg.Data, hub.ResumeKeyFile), Create: func() ([]byte, error) { return hub.NewResumeKey(), nil }},
		}
	}
	if cc.Embed != nil {
		emb := *cc.Embed
		if emb.StoreDir == "" {
			emb.StoreDir = cluster.StoreDir(d.cfg.Data)
		}
		cc.Embed = &emb
	}
	// /metrics is served while the node connects and catches up: the
	// gauge reads the node through its own pointer, not d.node.
	var cur atomic.Pointer[cluster.Node]
	d.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sessionledger_cluster_lag",
		Help: "Messages of the cluster's stream this node's ledger does not hold yet."}, func() float64 {
		if n := cur.Load(); n != nil {
			return float64(n.Lag())
		}
		return 0
	}))
	d.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sessionledger_cluster_outcomes_unsettled",
		Help: "Events this node answered \"outcome unknown\" for that no later record has settled yet (docs/cluster.md)."}, func() float64 {
		if n := cur.Load(); n != nil {
			return float64(len(n.Unsettled()))
		}
		return 0
	}))
	d.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sessionledger_cluster_outcomes_presumed_wrong_total",
		Help: "Events this node presumed not recorded, SettleAfter after an \"outcome unknown\" answer, that the log recorded all the same (docs/cluster.md)."}, func() float64 {
		if n := cur.Load(); n != nil {
			return float64(n.PresumedWrong())
		}
		return 0
	}))
	node, err := cluster.Connect(ctx, cc)
	if err != nil {
		return fmt.Errorf("join the cluster: %w", err)
	}
	d.node = node
	cur.Store(node)
	return nil
}

// syncAdminTokens agrees with the cluster on the admin token file, unless
// the tokens are given in the configuration (tests: the caller shares
// them), and keeps them agreed while the node runs (tokenSync, from Start).
func (d *Daemon) syncAdminTokens(ctx context.Context) error {
	if d.cfg.Hub.AdminTokens != nil || d.cfg.Hub.Admins != nil {
		return nil
	}
	every := d.cfg.Cluster.Heartbeat
	if every <= 0 {
		every = cluster.DefaultHeartbeat
	}
	d.tokens = newTokenSync(d.node, d.cfg.Data, every, d.log.With("component", "cluster"))
	return d.tokens.start(ctx)
}

// instanceID reads DATA/node.id, creating it on first start.
func instanceID(dir string) (string, error) {
	path := filepath.Join(dir, InstanceFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		var raw [16]byte
		_, _ = rand.Read(raw[:])
		if _, err := atomicfile.CreateOnce(path, []byte(hex.EncodeToString(raw[:])+"\n")); err != nil {
			return "", fmt.Errorf("create %s: %w", path, err)
		}
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// advertised is the gRPC address shown to other nodes' operators.
func (d *Daemon) advertised() string {
	if d.cfg.Advertise != "" {
		return d.cfg.Advertise
	}
	return d.addr
}

// clusterView shows the cluster to the hub.
type clusterView struct{ n *cluster.Node }

func (v clusterView) Nodes(ctx context.Context) ([]hub.NodeStatus, uint64, error) {
	states, err := v.n.Nodes(ctx)
	at, hashes, differ := cluster.Compare(states)
	out := make([]hub.NodeStatus, len(states))
	for i, st := range states {
		out[i] = hub.NodeStatus{Node: st.Node, Addr: st.Addr, HeadSeq: st.HeadSeq, HeadHash: st.HeadHash, AppliedSeq: st.AppliedSeq,
			Lag: st.Lag, Sessions: st.Sessions, Updated: st.Updated, HashAtCompared: hashes[st.Node]}
		for _, n := range differ {
			out[i].Differs = out[i].Differs || n == st.Node
		}
	}
	return out, at, err
}

func (v clusterView) Dead(ctx context.Context, names []string) ([]string, error) {
	return v.n.Dead(ctx, names)
}

func (v clusterView) Alive(ctx context.Context) ([]string, error) { return v.n.Alive(ctx) }
