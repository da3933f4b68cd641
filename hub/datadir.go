package hub

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ResumeKeyFile is the name of the file in hubd's data directory that
// holds the key resume secrets are signed with (Config.ResumeKey), so
// clients can resume across a restart.
const ResumeKeyFile = "resume.key"

// resumeKeyLen is the length of the resume key in bytes.
const resumeKeyLen = 32

// LoadOrCreateResumeKey reads dir/resume.key, creating it (mode 0600, 32
// random bytes) when it does not exist. Like the admin token file it
// appears complete or not at all.
func LoadOrCreateResumeKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, ResumeKeyFile)
	b, err := ReadSecretFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, resumeKeyLen)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		created, err := createOnce(path, key)
		if err != nil {
			return nil, fmt.Errorf("create resume key: %w", err)
		}
		if created {
			return key, nil
		}
		b, err = ReadSecretFile(path) // another process created it first
	}
	if err != nil {
		return nil, err
	}
	if len(b) != resumeKeyLen {
		return nil, fmt.Errorf("%s: %d bytes, want %d (delete it to make a new one; open resume secrets become invalid)", path, len(b), resumeKeyLen)
	}
	return b, nil
}

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

// createOnce creates path with data (mode 0600) unless it exists, so that
// a crash never leaves it half written: the data goes to a temporary file
// in the same directory, is fsynced, and is linked to path (which fails if
// path exists, so a concurrent creator's file is never replaced); the
// directory is fsynced so the new name survives a crash. created is false
// when path already existed.
func createOnce(path string, data []byte) (created bool, err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return false, err
	}
	_, werr := tmp.Write(data)
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		_ = os.Remove(tmp.Name())
		return false, err
	}
	lerr := os.Link(tmp.Name(), path)
	_ = os.Remove(tmp.Name())
	if errors.Is(lerr, fs.ErrExist) {
		return false, nil
	}
	if lerr != nil {
		return false, lerr
	}
	return true, syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
