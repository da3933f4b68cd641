package hubapi

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the client JWT claims: sub is the user, device the optional
// device; jti names the token (what a revocation by token id matches),
// iat and exp bound it.
type Claims struct {
	Device string `json:"device,omitempty"`
	jwt.RegisteredClaims
}

// NewClaims returns the claims of a client token for user on device, valid
// for ttl from now, with a random jti.
func NewClaims(user, device string, ttl time.Duration, now time.Time) Claims {
	return Claims{Device: device, RegisteredClaims: jwt.RegisteredClaims{
		ID: randomToken()[:22], Subject: user, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
}

// MintToken makes a client JWT (HS256) for user on device, valid for ttl,
// with iat and a random jti.
func MintToken(secret []byte, user, device string, ttl time.Duration, now time.Time) (string, error) {
	if user == "" {
		return "", errors.New("mint token: empty user")
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, NewClaims(user, device, ttl, now)).SignedString(secret)
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

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
