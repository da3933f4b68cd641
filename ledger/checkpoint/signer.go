package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sessionledger/sessionledger/ledger"
)

// DefaultEvery is Config.Every's default.
const DefaultEvery = 10 * time.Second

// Config configures a Signer.
type Config struct {
	// Store is the ledger whose tree heads are signed; it must be open
	// read-write (the checkpoints are stored in it).
	Store *ledger.Store
	// Key signs; its name must be the store's log id.
	Key note.Signer
	// Every is the least time between two checkpoints (default
	// DefaultEvery). A checkpoint is signed only when the log grew.
	Every time.Duration
	// Dir, if set, gets one file per checkpoint, never rewritten
	// (FileName). Point it at another disk, a WORM mount or a directory
	// another machine collects.
	Dir string
	// Logger receives one line per failure (default: discarded).
	Logger *slog.Logger
}

// Signed is a signed checkpoint with what it says.
type Signed struct {
	Checkpoint
	Note []byte
}

// Signer signs a checkpoint of the ledger's tree whenever the log grew, at
// most every Config.Every, and keeps it in the ledger, in Config.Dir and as
// Latest. A failure to sign or store one is logged and counted, and the
// next round tries again; appends never wait for it.
type Signer struct {
	cfg Config

	mu       sync.Mutex
	latest   Signed
	have     bool
	failures uint64
	lastErr  error

	quit      chan struct{}
	done      chan struct{}
	startOnce sync.Once
	closeOnce sync.Once
	started   bool
	signMu    sync.Mutex // one signing at a time
}

// New returns a Signer for cfg. It loads the last checkpoint the ledger
// holds as Latest.
func New(cfg Config) (*Signer, error) {
	if cfg.Store == nil || cfg.Key == nil {
		return nil, errors.New("checkpoint signer: Store and Key are required")
	}
	if cfg.Key.Name() != cfg.Store.LogID() {
		return nil, fmt.Errorf("checkpoint signer: the key is named %q, the log %q", cfg.Key.Name(), cfg.Store.LogID())
	}
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("checkpoint signer: --signed-checkpoint-dir: %w", err)
		}
	}
	s := &Signer{cfg: cfg, quit: make(chan struct{}), done: make(chan struct{})}
	last, ok, err := cfg.Store.LastCheckpoint()
	if err != nil {
		return nil, fmt.Errorf("checkpoint signer: %w", err)
	}
	if ok {
		c, err := Parse(last.Signed)
		if err != nil {
			return nil, fmt.Errorf("checkpoint signer: the last checkpoint stored: %w", err)
		}
		s.latest, s.have = Signed{Checkpoint: c, Note: last.Signed}, true
	}
	return s, nil
}

// Start signs a checkpoint at once if the log grew since the last one,
// then runs the signing loop until Close.
func (s *Signer) Start() {
	s.startOnce.Do(func() {
		s.mu.Lock()
		s.started = true
		s.mu.Unlock()
		go s.run()
	})
}

func (s *Signer) run() {
	defer close(s.done)
	for {
		changed := s.cfg.Store.Changed()
		if _, err := s.SignNow(context.Background()); err != nil && !errors.Is(err, ledger.ErrClosed) {
			s.cfg.Logger.Error("signed checkpoint failed; retrying next round", "err", err)
		}
		wait := time.NewTimer(s.cfg.Every)
		select {
		case <-s.quit:
			wait.Stop()
			return
		case <-wait.C:
		}
		// Sign after the next commit that adds records, not before.
		select {
		case <-s.quit:
			return
		case <-changed:
		}
	}
}

// Close stops the loop (an in-flight signing finishes) and signs a last
// checkpoint if the log grew; call it before the ledger is closed. It is
// idempotent and returns the last checkpoint's error.
func (s *Signer) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.quit)
		s.mu.Lock()
		started := s.started
		s.mu.Unlock()
		if started {
			<-s.done
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = s.SignNow(ctx)
		if errors.Is(err, ledger.ErrClosed) {
			err = nil
		}
	})
	return err
}

// SignNow signs a checkpoint of the head if the log grew since the last
// one, stores it in the ledger and in Dir, and returns the latest.
func (s *Signer) SignNow(ctx context.Context) (Signed, error) {
	s.signMu.Lock()
	defer s.signMu.Unlock()
	latest, have := s.Latest()
	th, err := s.cfg.Store.TreeHead()
	if err != nil {
		return latest, s.fail(err)
	}
	if have && th.Size <= latest.Size || th.Size == 0 {
		return latest, nil
	}
	c := Checkpoint{Origin: s.cfg.Store.LogID(), TreeHead: th}
	signed, err := Sign(c, s.cfg.Key)
	if err != nil {
		return latest, s.fail(err)
	}
	if err := s.cfg.Store.PutCheckpoint(ctx, th, signed); err != nil {
		return latest, s.fail(err)
	}
	sc := Signed{Checkpoint: c, Note: signed}
	s.mu.Lock()
	s.latest, s.have = sc, true
	s.mu.Unlock()
	if s.cfg.Dir != "" {
		if err := WriteFile(s.cfg.Dir, sc); err != nil {
			return sc, s.fail(err)
		}
	}
	return sc, nil
}

func (s *Signer) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures++
	s.lastErr = err
	return fmt.Errorf("signed checkpoint: %w", err)
}

// Latest returns the newest signed checkpoint, and false before the first.
func (s *Signer) Latest() (Signed, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest, s.have
}

// Failures is how many checkpoints could not be signed or stored, and the
// last error.
func (s *Signer) Failures() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failures, s.lastErr
}

// Handler serves GET /checkpoint: the latest signed checkpoint as
// text/plain, 404 before the first.
func (s *Signer) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		sc, ok := s.Latest()
		if !ok {
			http.Error(w, "no signed checkpoint yet (the log is empty)", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(sc.Note)
	})
}

// FileName is the file a checkpoint of size records gets in a checkpoint
// directory: sorted by size.
func FileName(size uint64) string { return fmt.Sprintf("checkpoint-%020d", size) }

// WriteFile writes sc to dir as FileName(size), never replacing a file:
// a temporary file is written and fsync'd, then hard-linked to its name
// (which fails if the name exists) and the directory fsync'd. A file of
// that name with the same bytes is not an error (a restart that signed the
// same head again); one with other bytes is.
func WriteFile(dir string, sc Signed) error {
	final := filepath.Join(dir, FileName(sc.Size))
	if old, err := os.ReadFile(final); err == nil {
		if bytes.Equal(old, sc.Note) {
			return nil
		}
		return fmt.Errorf("%s exists with another checkpoint of size %d: not replaced", final, sc.Size)
	}
	f, err := os.CreateTemp(dir, ".tmp-checkpoint-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(sc.Note)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp, final)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", final, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
