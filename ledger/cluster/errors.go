package cluster

import "errors"

// ErrSettingChanged is SetSetting's refusal: the setting is no longer at
// the revision given (another node changed it meanwhile).
var ErrSettingChanged = errors.New("the cluster's setting changed meanwhile")
