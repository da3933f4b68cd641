package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Setting returns the value of the shared setting key in ConfigBucket and
// its revision; a setting that does not exist is nil at revision 0. A
// setting changes while the nodes run (Shared files are settled once, at
// Connect): each node compares it with its own copy, and SetSetting
// changes it for all. The read is served by the nearest replica of the
// bucket (a JetStream direct get), so right after a change on another
// node it may return the previous revision for a moment; a change made
// at a stale revision is refused (ErrSettingChanged), so none is lost.
func (n *Node) Setting(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := n.config.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, 0, nil
	case err != nil:
		return nil, 0, fmt.Errorf("cluster setting %s: %w", key, err)
	}
	return e.Value(), e.Revision(), nil
}

// SetSetting stores value as the shared setting key if the setting is
// still at revision rev (0: it does not exist yet), and returns the new
// revision; otherwise ErrSettingChanged, and nothing is stored. Like any
// write to the cluster it needs a quorum of the bucket's replicas.
func (n *Node) SetSetting(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	var err error
	var got uint64
	if rev == 0 {
		got, err = n.config.Create(ctx, key, value)
	} else {
		got, err = n.config.Update(ctx, key, value, rev)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return 0, ErrSettingChanged
	case err != nil:
		return 0, fmt.Errorf("cluster setting %s: %w", key, err)
	}
	return got, nil
}
