package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubapi"
)

// credFiles are the credential files hubd re-reads while it runs: the
// admin token file and the client token keys (JWK Set, public key). Reload
// (SIGHUP) re-reads them; so does a watcher when one of them changes.
type credFiles struct {
	adminFile string           // "" when the admin tokens came from Config
	keys      *hub.ClientKeys  // the keys read at New (nil: none)
	stamps    map[string]stamp // what the watcher saw of each file

	mu     sync.Mutex // serialises Reload
	stop   chan struct{}
	done   chan struct{}
	active bool
}

// stamp is what tells a changed file: a new file renamed over the old one
// (how keys and tokens should be replaced) changes the inode's times and
// usually the size.
type stamp struct {
	mod  time.Time
	size int64
}

func statStamp(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{fi.ModTime(), fi.Size()}
}

// readKeys reads the client token keys: the JWT secret (read by New), the
// public key file and the JWK Set file. An error is the operator's: a
// usage error at start, logged (the keys in force stay) on a reload.
func (d *Daemon) readKeys() error {
	cfg := d.cfg
	var pemKey, jwks []byte
	var err error
	if cfg.JWTPublicKeyFile != "" {
		if pemKey, err = os.ReadFile(cfg.JWTPublicKeyFile); err != nil {
			return fmt.Errorf("--jwt-public-key-file: %w", err)
		}
	}
	if cfg.JWKSFile != "" {
		if jwks, err = os.ReadFile(cfg.JWKSFile); err != nil {
			return fmt.Errorf("--jwt-jwks-file: %w", err)
		}
	}
	if d.jwtSecret == nil && pemKey == nil && jwks == nil {
		return nil
	}
	k, err := hub.NewClientKeys(d.jwtSecret, pemKey, jwks)
	if err != nil {
		return fmt.Errorf("client token keys (--jwt-secret-file, --jwt-public-key-file, --jwt-jwks-file): %w", err)
	}
	d.creds.keys = k
	return nil
}

// serverTLSConfig is the listeners' TLS: the certificate, and with a
// client CA file, client certificates asked for and verified (required of
// every caller with forClients, else checked by the hub for admin calls).
func serverTLSConfig(certFile, keyFile, caFile string, forClients bool) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--client-ca %s: no PEM certificate in it", caFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if forClients {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}

// watched lists the credential files to watch.
func (d *Daemon) watched() []string {
	var out []string
	for _, p := range []string{d.creds.adminFile, d.cfg.JWTPublicKeyFile, d.cfg.JWKSFile} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Reload re-reads the admin token file and the client token key files and
// hands what it read to the hub: calls and connects from then on are
// checked against them. A file that cannot be read or parsed is reported
// and changes nothing (the credentials in force stay): a half-written or
// wrong file never locks operators out.
func (d *Daemon) Reload() error {
	d.creds.mu.Lock()
	defer d.creds.mu.Unlock()
	if d.hub == nil {
		return errors.New("reload: hubd is not started")
	}
	if d.creds.stamps == nil {
		d.creds.stamps = make(map[string]stamp)
	}
	for _, p := range d.watched() {
		d.creds.stamps[p] = statStamp(p)
	}
	var errs []error
	if p := d.creds.adminFile; p != "" {
		toks, err := hubapi.ReadAdminTokenFile(p)
		if err == nil {
			err = d.hub.SetAdminTokens(toks)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("admin tokens not reloaded: %w", err))
		} else {
			d.log.Info("admin tokens reloaded", "file", p, "tokens", len(toks))
		}
	}
	if d.cfg.JWTPublicKeyFile != "" || d.cfg.JWKSFile != "" {
		old := d.creds.keys
		err := d.readKeys()
		if err == nil {
			err = d.hub.SetClientKeys(d.creds.keys)
		}
		if err != nil {
			d.creds.keys = old
			errs = append(errs, fmt.Errorf("client token keys not reloaded: %w", err))
		} else {
			d.log.Info("client token keys reloaded", "jwks", d.cfg.JWKSFile, "public_key", d.cfg.JWTPublicKeyFile)
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		d.log.Error("reload failed; the credentials in force stay", "err", err)
	}
	return err
}

// startWatching starts the goroutine that reloads when a credential file
// changes; stopWatching (Shutdown) stops it.
func (d *Daemon) startWatching() {
	files := d.watched()
	d.creds.stamps = make(map[string]stamp, len(files))
	for _, p := range files {
		d.creds.stamps[p] = statStamp(p)
	}
	every := d.cfg.WatchInterval
	if len(files) == 0 || every < 0 {
		return // Reload (SIGHUP) only
	}
	if every == 0 {
		every = 2 * time.Second
	}
	d.creds.stop, d.creds.done, d.creds.active = make(chan struct{}), make(chan struct{}), true
	go func() {
		defer close(d.creds.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-d.creds.stop:
				return
			}
			if d.changed(files) {
				_ = d.Reload()
			}
		}
	}()
}

func (d *Daemon) changed(files []string) bool {
	d.creds.mu.Lock()
	defer d.creds.mu.Unlock()
	for _, p := range files {
		if statStamp(p) != d.creds.stamps[p] {
			return true
		}
	}
	return false
}

func (d *Daemon) stopWatching() {
	if d.creds.active {
		close(d.creds.stop)
		<-d.creds.done
		d.creds.active = false
	}
}
