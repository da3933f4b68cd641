package cluster

import "errors"

// ErrRegistryUnsettled is Dead's answer while the node registry has not
// taken this node's own heartbeats for LostAfter: an expired entry then
// proves nothing (every entry expires while the bucket has no leader).
var ErrRegistryUnsettled = errors.New("the node registry has not taken this node's heartbeats for --lost-after yet: it cannot tell which nodes are dead")

// ErrSettingChanged is SetSetting's refusal: the setting is no longer at
// the revision given (another node changed it meanwhile).
var ErrSettingChanged = errors.New("the cluster's setting changed meanwhile")
