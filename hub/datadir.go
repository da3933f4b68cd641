package hub

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/sessionledger/sessionledger/hub/hubapi"

	"github.com/sessionledger/sessionledger/internal/atomicfile"
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
	b, err := hubapi.ReadSecretFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := NewResumeKey()
		created, err := atomicfile.CreateOnce(path, key)
		if err != nil {
			return nil, fmt.Errorf("create resume key: %w", err)
		}
		if created {
			return key, nil
		}
		b, err = hubapi.ReadSecretFile(path) // another process created it first
	}
	if err != nil {
		return nil, err
	}
	if len(b) != resumeKeyLen {
		return nil, fmt.Errorf("%s: %d bytes, want %d (delete it to make a new one; open resume secrets become invalid)", path, len(b), resumeKeyLen)
	}
	return b, nil
}

// NewResumeKey returns a new random resume key, as LoadOrCreateResumeKey
// writes it.
func NewResumeKey() []byte {
	key := make([]byte, resumeKeyLen)
	_, _ = rand.Read(key)
	return key
}
