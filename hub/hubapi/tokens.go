package hubapi

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionledger/sessionledger/internal/atomicfile"
)

// AdminTokenFile is the name of the admin token file in hubd's data
// directory. Each non-comment line is "actor token" (or just a token, whose
// actor is "admin").
const AdminTokenFile = "admin.token"

// LoadOrCreateAdminTokens reads dir/admin.token, creating it (mode 0600,
// one random token for actor "admin") when it does not exist. created says
// whether it did. The file appears complete or not at all; if another
// process creates it first, that one is read.
func LoadOrCreateAdminTokens(dir string) (tokens map[string]string, created bool, err error) {
	path := filepath.Join(dir, AdminTokenFile)
	tokens, err = ReadAdminTokens(path)
	if err == nil {
		return tokens, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	content, tok := newAdminTokenFile()
	if created, err = atomicfile.CreateOnce(path, content); err != nil {
		return nil, false, fmt.Errorf("create admin token: %w", err)
	}
	if !created {
		tokens, err = ReadAdminTokens(path)
		return tokens, false, err
	}
	return map[string]string{tok: "admin"}, true, nil
}

// NewAdminTokenFile returns the content of a new admin token file: one
// random token for actor "admin".
func NewAdminTokenFile() []byte {
	b, _ := newAdminTokenFile()
	return b
}

func newAdminTokenFile() ([]byte, string) {
	tok := randomToken()
	return []byte(fmt.Sprintf("# sessionledger admin tokens: one \"actor token\" per line\nadmin %s\n", tok)), tok
}

// ReadAdminTokens parses an admin token file into token → actor. It
// refuses a file that other users can read.
func ReadAdminTokens(path string) (map[string]string, error) {
	lines, err := readAdminTokenLines(path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(lines))
	for _, l := range lines {
		out[l.token] = l.actor
	}
	return out, nil
}

type adminTokenLine struct{ actor, token string }

// readAdminTokenLines parses an admin token file, in file order.
func readAdminTokenLines(path string) ([]adminTokenLine, error) {
	b, err := ReadSecretFile(path)
	if err != nil {
		return nil, err
	}
	var out []adminTokenLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		switch len(fields) {
		case 1:
			out = append(out, adminTokenLine{"admin", fields[0]})
		case 2:
			out = append(out, adminTokenLine{fields[0], fields[1]})
		default:
			return nil, fmt.Errorf("admin token file %s: a line must be \"actor token\"", path)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("admin token file %s holds no token", path)
	}
	return out, nil
}

// ErrSecretFileMode: a secret file (admin tokens, resume key, JWT secret)
// that users other than its owner may read or write.
var ErrSecretFileMode = errors.New("secret file open to other users")

// ReadSecretFile reads a file that holds a secret: the admin tokens, the
// resume key, the JWT secret. It refuses (ErrSecretFileMode) a file that
// anyone but its owner may read or write, as ssh does with private keys:
// a secret others can read is not one, and one others can write lets them
// choose it.
func ReadSecretFile(path string) ([]byte, error) {
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
		return nil, fmt.Errorf("%w: %s has mode %04o; want 0600 (chmod 600 %s)", ErrSecretFileMode, path, perm, path)
	}
	return io.ReadAll(f)
}

// FirstAdminToken returns the first token in the admin token file at path
// (in file order), for hubctl and auditq: the one hubd created, unless an
// operator put another line first.
func FirstAdminToken(path string) (string, error) {
	lines, err := readAdminTokenLines(path)
	if err != nil {
		return "", err
	}
	return lines[0].token, nil
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Claims are the client JWT claims: sub is the user.
type Claims struct {
	Device string `json:"device,omitempty"`
	jwt.RegisteredClaims
}

// MintToken makes a client JWT (HS256) for user on device, valid for ttl.
func MintToken(secret []byte, user, device string, ttl time.Duration, now time.Time) (string, error) {
	if user == "" {
		return "", errors.New("mint token: empty user")
	}
	c := Claims{Device: device, RegisteredClaims: jwt.RegisteredClaims{
		Subject: user, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}
