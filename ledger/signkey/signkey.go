// Package signkey keeps the Ed25519 key that signs a ledger's checkpoints
// (package ledger/checkpoint): its file in hubd's data directory, and the
// verifier key an outside auditor checks signatures with. It imports
// nothing of sessionledger, so client tools (hubctl key) can read a key
// file without linking the ledger.
package signkey

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// ErrMalformed: a key file that does not hold an Ed25519 note signing key.
var ErrMalformed = errors.New("malformed checkpoint key")

// KeyFile is the private signing key's file in hubd's data directory.
const KeyFile = "checkpoint.key"

// LoadOrCreateKey returns the signer in dir/KeyFile, creating a new
// Ed25519 key named name there (mode 0600) if there is none, and whether it
// did. A key file whose key is named otherwise than name is refused: it
// belongs to another log.
func LoadOrCreateKey(dir, name string) (note.Signer, bool, error) {
	path := filepath.Join(dir, KeyFile)
	b, err := readKey(path)
	if errors.Is(err, os.ErrNotExist) {
		skey, _, err := note.GenerateKey(rand.Reader, name)
		if err != nil {
			return nil, false, fmt.Errorf("checkpoint key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("checkpoint key: %w", err)
		}
		_, err = f.WriteString(skey + "\n")
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(path)
			return nil, false, fmt.Errorf("checkpoint key %s: %w", path, err)
		}
		s, err := note.NewSigner(skey)
		return s, true, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint key: %w", err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint key %s: %w: %v", path, ErrMalformed, err)
	}
	if s.Name() != name {
		return nil, false, fmt.Errorf("checkpoint key %s is the key of log %q, not of this ledger's log %q: move it away to have a new one created", path, s.Name(), name)
	}
	return s, false, nil
}

// VerifierKey is the verifier key of the private key in the key file at
// path: what auditq verify --key and check-proof --key take.
func VerifierKey(path string) (string, error) {
	b, err := readKey(path)
	if err != nil {
		return "", err
	}
	return verifierOf(strings.TrimSpace(string(b)))
}

// verifierOf derives the verifier key of a note private key
// ("PRIVATE+KEY+name+hash+base64(alg || seed)").
func verifierOf(skey string) (string, error) {
	if _, err := note.NewSigner(skey); err != nil {
		return "", fmt.Errorf("%w: not a signing key: %v", ErrMalformed, err)
	}
	parts := strings.SplitN(skey, "+", 5)
	key, _ := base64.StdEncoding.DecodeString(parts[4])
	if len(key) != 1+ed25519.SeedSize || key[0] != 1 {
		return "", fmt.Errorf("%w: not an Ed25519 signing key", ErrMalformed)
	}
	pub := ed25519.NewKeyFromSeed(key[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}

// readKey reads a key file, refusing one that users other than its owner
// may read or write (as hubd does every secret file): a signing key others
// can read signs for them too.
func readKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o; want 0600 (chmod 600 %s)", path, perm, path)
	}
	return io.ReadAll(f)
}
