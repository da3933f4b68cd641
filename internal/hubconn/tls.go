package hubconn

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// TLS is what a client tool's TLS flags say: --tls, --ca, --cert and the
// client certificate's key. The key's flag is --key in hubctl and
// --cert-key in auditq, whose --key is the checkpoints' verifier key.
type TLS struct {
	// On asks for TLS even without a CA or a certificate (--tls, or a
	// hubd known to serve TLS): the system's roots are trusted.
	On bool
	// CAFile is a PEM file of the CAs that sign hubd's certificate (--ca;
	// empty: the system's roots).
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for a
	// hubd that wants one (its --client-ca).
	CertFile, KeyFile string
	// KeyFlag is the name of KeyFile's flag, for the messages ("--key"
	// when empty).
	KeyFlag string
}

// Config returns the TLS configuration t asks for, or nil for plaintext:
// TLS is on with On, a CA or a client certificate. Every error is about a
// flag (a certificate without its key, a file that cannot be read or holds
// no certificate) and names it: the tools report it as bad usage.
func (t TLS) Config() (*tls.Config, error) {
	if !t.On && t.CAFile == "" && t.CertFile == "" {
		return nil, nil
	}
	keyFlag := t.KeyFlag
	if keyFlag == "" {
		keyFlag = "--key"
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, fmt.Errorf("--cert and %s go together", keyFlag)
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert/%s: %w", keyFlag, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate in it", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// Credentials is Config as gRPC transport credentials: TLS, or insecure
// for plaintext.
func (t TLS) Credentials() (credentials.TransportCredentials, error) {
	cfg, err := t.Config()
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return insecure.NewCredentials(), nil
	}
	return credentials.NewTLS(cfg), nil
}
