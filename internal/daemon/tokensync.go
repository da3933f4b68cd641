package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/internal/atomicfile"
	"github.com/sessionledger/sessionledger/ledger/cluster"
)

// adminTokensKey names the admin token file among the cluster's settings.
const adminTokensKey = "admin.token"

// AgreedAdminTokensFile names the file in the data directory that holds
// the SHA-256 of the admin token file as this node and its cluster last
// agreed on it: at the next start it tells which side changed while the
// node was down.
const AgreedAdminTokensFile = ".admin.token.cluster"

// tokenSync keeps a cluster node's admin token file and the cluster's copy
// (a setting in the cluster's key-value store) the same while the nodes
// run, so a token added, changed or removed on any node (hubctl
// admin-token, or an edit of the file) holds on every node:
//
//   - the file changed here and the cluster's copy did not: the cluster
//     takes this node's file;
//   - the cluster's copy changed and the file did not: the file is
//     rewritten with it;
//   - both changed (two nodes at once): the changes are merged
//     (hubapi.MergeAdminTokens); when they conflict the cluster's copy
//     wins and the error says whose change was dropped.
//
// What "changed" means is relative to the content both last agreed on,
// kept in memory and, as a hash, in AgreedAdminTokensFile. At start a node
// whose file and the cluster's both changed since then (or that has no
// record of an agreement) and differ is refused, as before. Every change
// is made under the admin token file's lock (hubapi.LockAdminTokens), so
// none of hubctl's edits is lost, and a file that does not parse is never
// shared.
type tokenSync struct {
	node       *cluster.Node
	dir, path  string
	agreedPath string
	log        *slog.Logger
	every      time.Duration

	mu        sync.Mutex // serialises sync
	base      []byte     // the content agreed on; nil before the first agreement this run
	baseSum   string     // its SHA-256 (hex), as AgreedAdminTokensFile holds it
	refused   string     // the SHA-256 of the content last refused, so it is logged once
	lastErr   string     // the last error of the loop, so it is logged once
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newTokenSync(node *cluster.Node, dir string, every time.Duration, log *slog.Logger) *tokenSync {
	s := &tokenSync{node: node, dir: dir, path: filepath.Join(dir, hubapi.AdminTokenFile), agreedPath: filepath.Join(dir, AgreedAdminTokensFile),
		log: log, every: every}
	if b, err := os.ReadFile(s.agreedPath); err == nil {
		s.baseSum = strings.TrimSpace(string(b))
	}
	return s
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// errTokensRefused marks a refusal that waiting does not cure: a file that
// does not parse, or two changes that cannot be told apart at start.
var errTokensRefused = errors.New("admin tokens refused")

// start agrees with the cluster before the node reads its admin token
// file, retrying while the cluster does not answer, until ctx ends.
func (s *tokenSync) start(ctx context.Context) error {
	for {
		try, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := s.sync(try, true)
		cancel()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errTokensRefused):
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agree on the admin tokens with the cluster: %w (last: %v)", ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// run starts the loop that syncs every s.every and calls reload when this
// node's admin tokens changed; close stops it.
func (s *tokenSync) run(reload func() error) {
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-s.stop:
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), max(2*s.every, 2*time.Second))
			changed, err := s.sync(ctx, false)
			cancel()
			switch {
			case err != nil && err.Error() != s.lastErr:
				s.log.Warn("could not compare the admin tokens with the cluster's; trying again", "err", err)
				s.lastErr = err.Error()
			case err == nil && s.lastErr != "":
				s.log.Info("the admin tokens agree with the cluster's again")
				s.lastErr = ""
			}
			if changed {
				_ = reload() // logs its own failure; the tokens in force stay
			}
		}
	}()
}

// close stops the loop (if it runs) and waits for it; idempotent.
func (s *tokenSync) close() {
	s.closeOnce.Do(func() {
		if s.stop != nil {
			close(s.stop)
			<-s.done
		}
	})
}

// sync compares the file with the cluster's copy once, and changes
// whichever side must change. changed reports that the file this node
// reads, or the tokens it should use, changed. starting makes the cases
// that are logged and left alone while running refusals.
func (s *tokenSync) sync(ctx context.Context, starting bool) (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := hubapi.LockAdminTokens(s.dir)
	if err != nil {
		return false, err
	}
	defer unlock()
	for range 5 { // the cluster's copy changed under a write: look again
		local, err := hubapi.ReadSecretFile(s.path)
		if errors.Is(err, fs.ErrNotExist) {
			local, err = nil, nil
		}
		if err != nil {
			return false, s.refuse(starting, err.Error(), err)
		}
		theirs, rev, err := s.node.Setting(ctx, adminTokensKey)
		if err != nil {
			return false, err
		}
		var next []byte // what both sides get
		var what string
		switch {
		case theirs == nil && local == nil:
			next, what = hubapi.NewAdminTokenFile(), "created an admin token file and gave it to the cluster" // the first node
		case theirs == nil:
			next, what = local, "gave the cluster this node's admin token file" // the first node, or a cluster that lost its copy
		case bytes.Equal(local, theirs):
			return false, s.agreed(local)
		case local == nil:
			next, what = theirs, "took the cluster's admin token file"
		case sum(local) == s.baseSum:
			next, what = theirs, "took the cluster's admin tokens (changed on another node)"
		case sum(theirs) == s.baseSum:
			next, what = local, "gave the cluster this node's admin tokens (the file changed here)"
		case s.base == nil:
			return false, fmt.Errorf("%w: %s differs from the cluster's copy, and both changed since this node last agreed with the cluster (or it has no record of that): move this node's file away to take the cluster's, or make the cluster's the same",
				errTokensRefused, s.path)
		default:
			what = "merged this node's change of the admin tokens with another node's"
			if next, err = hubapi.MergeAdminTokens(s.base, local, theirs); err != nil {
				s.log.Error("this node's change of the admin token file and another node's conflict; the cluster's stays and this node's change is dropped: make it again",
					"file", s.path, "err", err)
				next, what = theirs, "took the cluster's admin tokens"
			}
		}
		if _, err := hubapi.ParseAdminTokens(s.path, next); err != nil {
			return false, s.refuse(starting, sum(next), err)
		}
		if !bytes.Equal(next, theirs) {
			if _, err := s.node.SetSetting(ctx, adminTokensKey, next, rev); errors.Is(err, cluster.ErrSettingChanged) {
				continue
			} else if err != nil {
				return false, err
			}
		}
		if !bytes.Equal(next, local) {
			if err := atomicfile.Replace(s.path, next); err != nil {
				return false, fmt.Errorf("write the cluster's admin tokens to %s: %w", s.path, err)
			}
		}
		s.log.Info(what, "file", s.path)
		return true, s.agreed(next)
	}
	return false, errors.New("the cluster's admin tokens keep changing; trying again")
}

// refuse reports a file that will not do: at start an error, while
// running a log line (once per what: the content's hash, or the error);
// the tokens in force stay.
func (s *tokenSync) refuse(starting bool, what string, err error) error {
	if starting {
		return fmt.Errorf("%w: %w", errTokensRefused, err)
	}
	if what != s.refused {
		s.log.Error("the admin token file and the cluster's copy stay as they are until the file is fixed", "file", s.path, "err", err)
		s.refused = what
	}
	return nil
}

// agreed records that the file and the cluster's copy are content.
func (s *tokenSync) agreed(content []byte) error {
	s.base, s.refused = content, ""
	if h := sum(content); h != s.baseSum {
		if err := atomicfile.Replace(s.agreedPath, []byte(h+"\n")); err != nil {
			return fmt.Errorf("record the agreed admin tokens in %s: %w", s.agreedPath, err)
		}
		s.baseSum = h
	}
	return nil
}
