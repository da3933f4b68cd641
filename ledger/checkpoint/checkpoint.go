package checkpoint

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
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
