// Package atomicfile creates small files (keys, tokens) that appear
// complete or not at all, even across a crash.
package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// CreateOnce creates path with data (mode 0600) unless it exists, so that a
// crash never leaves it half written: the data goes to a temporary file in
// the same directory, is fsynced, and is linked to path (which fails if
// path exists, so a concurrent creator's file is never replaced); the
// directory is fsynced so the new name survives a crash. created is false
// when path already existed.
func CreateOnce(path string, data []byte) (created bool, err error) {
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

// Replace writes data to path (mode 0600), replacing what was there, so
// that a reader or a crash sees the old content or the new, never a mix:
// the data goes to a temporary file in the same directory, is fsynced and
// renamed over path, and the directory is fsynced.
func Replace(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return syncDir(dir)
}
