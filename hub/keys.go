package hub

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// ClientKeys are the keys client tokens are verified with: an HS256
// secret, and public keys for RS256, ES256 and EdDSA, from a PEM file (one
// key, whatever the token's kid) and/or a JWK Set (keys chosen by the
// token's kid, so a key can be added before tokens signed with it appear
// and dropped after the last one expired: rotation without a restart).
// A ClientKeys does not change; a reload makes a new one and hands it to
// Server.SetClientKeys.
//
// The JWK Set is parsed by github.com/MicahParks/keyfunc/v3 (over
// github.com/MicahParks/jwkset): the JWKS reader golang-jwt's own docs
// point to, maintained, and it handles RSA, EC and OKP (Ed25519) keys, the
// kid lookup and the JWK "alg" check. From bytes it starts no goroutine
// and does no I/O; hubd reads the file itself and re-reads it on SIGHUP or
// when it changes.
type ClientKeys struct {
	secret []byte
	pub    crypto.PublicKey
	jwks   keyfunc.Keyfunc
	algs   []string
}

// The signing methods client tokens may use: HS256 with the secret, the
// others with a public key. Anything else (none, HS384, RS512...) is
// refused.
var publicKeyAlgs = []string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg(), jwt.SigningMethodEdDSA.Alg()}

// NewClientKeys returns the keys made of an HS256 secret (at least 32
// bytes), a PEM public key (PKIX "PUBLIC KEY", or a certificate: RSA,
// ECDSA P-256 or Ed25519) and a JWK Set (JSON), any of them empty but not
// all.
func NewClientKeys(secret, publicKeyPEM, jwksJSON []byte) (*ClientKeys, error) {
	k := &ClientKeys{}
	if len(secret) > 0 {
		if len(secret) < 32 {
			return nil, fmt.Errorf("JWT secret is %d bytes; want at least 32", len(secret))
		}
		k.secret = secret
		k.algs = append(k.algs, jwt.SigningMethodHS256.Alg())
	}
	if len(publicKeyPEM) > 0 {
		pub, err := ParsePublicKeyPEM(publicKeyPEM)
		if err != nil {
			return nil, err
		}
		k.pub = pub
	}
	if len(jwksJSON) > 0 {
		var probe struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(jwksJSON, &probe); err != nil {
			return nil, fmt.Errorf("JWK Set: %w", err)
		}
		if len(probe.Keys) == 0 {
			return nil, errors.New("JWK Set: no keys")
		}
		kf, err := keyfunc.NewJWKSetJSON(jwksJSON)
		if err != nil {
			return nil, fmt.Errorf("JWK Set: %w", err)
		}
		k.jwks = kf
	}
	if k.pub != nil || k.jwks != nil {
		k.algs = append(k.algs, publicKeyAlgs...)
	}
	if len(k.algs) == 0 {
		return nil, errors.New("no client token key: give a secret, a public key or a JWK Set")
	}
	return k, nil
}

// ParsePublicKeyPEM reads the first public key (or certificate) in a PEM
// file: RSA, ECDSA or Ed25519.
func ParsePublicKeyPEM(b []byte) (crypto.PublicKey, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("public key: no PEM \"PUBLIC KEY\" or \"CERTIFICATE\" block")
		}
		var pub any
		var err error
		switch blk.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
				pub = c.PublicKey
			}
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("public key: %w", err)
		}
		switch pub.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			return pub, nil
		}
		return nil, fmt.Errorf("public key: %T is not RSA, ECDSA or Ed25519", pub)
	}
}

// keyfunc chooses the key for a token: the secret for HS256; for a public
// key method, the JWK Set's key named by the token's kid (or, without a
// kid, each of its keys), else the PEM key. golang-jwt then checks the
// key's type against the method, so no key verifies a method it is not
// for (an RSA public key is never taken as an HMAC secret).
func (k *ClientKeys) keyfunc(t *jwt.Token) (any, error) {
	if t.Method.Alg() == jwt.SigningMethodHS256.Alg() {
		if k.secret == nil {
			return nil, errors.New("HS256 tokens are not accepted here")
		}
		return k.secret, nil
	}
	if k.jwks != nil {
		_, hasKid := t.Header["kid"]
		if hasKid || k.pub == nil {
			return k.jwks.Keyfunc(t)
		}
	}
	if k.pub == nil {
		return nil, errors.New("no public key")
	}
	return k.pub, nil
}
