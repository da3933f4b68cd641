package checkpoint

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/sessionledger/sessionledger/ledger"
)

// Checkpoint is a tree head named by its log: the body of a C2SP
// tlog-checkpoint.
type Checkpoint struct {
	// Origin is the log id (ledger.Store.LogID).
	Origin string
	ledger.TreeHead
}

// Text is the checkpoint's note text: origin, size and root lines.
func (c Checkpoint) Text() []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// ParseText reads a checkpoint's note text. Extension lines after the root
// are allowed (C2SP) and ignored.
func ParseText(text []byte) (Checkpoint, error) {
	lines := strings.SplitAfter(string(text), "\n")
	if len(lines) < 4 || !strings.HasSuffix(lines[2], "\n") {
		return Checkpoint{}, fmt.Errorf("%w: want origin, size and root lines", ErrMalformed)
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	sizeText := strings.TrimSuffix(lines[1], "\n")
	size, err := strconv.ParseUint(sizeText, 10, 64)
	if origin == "" || err != nil || (len(sizeText) > 1 && sizeText[0] == '0') {
		return Checkpoint{}, fmt.Errorf("%w: origin %q, size %q", ErrMalformed, origin, sizeText)
	}
	root, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(lines[2], "\n"))
	if err != nil || len(root) != len(ledger.Hash{}) {
		return Checkpoint{}, fmt.Errorf("%w: root %q is not a base64 SHA-256 hash", ErrMalformed, strings.TrimSuffix(lines[2], "\n"))
	}
	c := Checkpoint{Origin: origin, TreeHead: ledger.TreeHead{Size: size}}
	copy(c.Root[:], root)
	return c, nil
}

// Sign returns c signed as a note by s.
func Sign(c Checkpoint, s note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: string(c.Text())}, s)
}

// Parse reads a signed checkpoint without checking its signature (to name
// it, or to show one whose key is not at hand).
func Parse(signed []byte) (Checkpoint, error) {
	text, _, ok := bytes.Cut(signed, []byte("\n\n"))
	if !ok {
		return Checkpoint{}, fmt.Errorf("%w: no signature block (a note is its text, a blank line and signatures)", ErrMalformed)
	}
	return ParseText(append(text, '\n'))
}

// Open checks that signed carries a valid signature by verifierKey (a note
// verifier key, VerifierKey's output) and returns the checkpoint. A
// checkpoint signed by another key, or whose text or signature was
// changed, is ErrSignature.
func Open(signed []byte, verifierKey string) (Checkpoint, error) {
	v, err := note.NewVerifier(strings.TrimSpace(verifierKey))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: verifier key: %v", ErrMalformed, err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unverified):
		return Checkpoint{}, fmt.Errorf("%w: no signature by %s (signed by %s)", ErrSignature, v.Name(), signerNames(unverified.Note))
	case errors.As(err, &invalid):
		return Checkpoint{}, fmt.Errorf("%w: the signature by %s does not match the text: the checkpoint was changed after it was signed", ErrSignature, invalid.Name)
	case err != nil:
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return ParseText([]byte(n.Text))
}

func signerNames(n *note.Note) string {
	var names []string
	for _, s := range n.UnverifiedSigs {
		names = append(names, fmt.Sprintf("%s (key hash %08x)", s.Name, s.Hash))
	}
	if len(names) == 0 {
		return "nobody"
	}
	return strings.Join(names, ", ")
}

// KeyFile is the private signing key's file in hubd's data directory.
const KeyFile = "checkpoint.key"

// LoadOrCreateKey returns the signer in dir/KeyFile, creating a new
// Ed25519 key named name there (mode 0600) if there is none, and whether it
// did. A key file whose key is named otherwise than name is refused: it
// belongs to another log.
func LoadOrCreateKey(dir, name string) (note.Signer, bool, error) {
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path)
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
	b, err := os.ReadFile(path)
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
