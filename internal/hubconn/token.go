package hubconn

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/sessionledger/sessionledger/hub/hubapi"
)

// AdminToken returns the admin token a tool presents to hubd: the first of
// given that is not empty (the tool passes its --token, then
// $HUBD_ADMIN_TOKEN), else the first token of the file hubd writes to its
// data directory, dataDir/admin.token. Without one it says where it
// looked and what else to give.
func AdminToken(dataDir string, given ...string) (string, error) {
	for _, t := range given {
		if t != "" {
			return t, nil
		}
	}
	path := filepath.Join(dataDir, hubapi.AdminTokenFile)
	t, err := hubapi.FirstAdminToken(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("no admin token: %s does not exist (is --data hubd's data directory? or pass --token or HUBD_ADMIN_TOKEN)", path)
	case err != nil:
		return "", fmt.Errorf("admin token: %w", err)
	}
	return t, nil
}
