package version

import (
	"runtime/debug"
	"testing"
)

func TestFormat(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-12-06T17:00:00Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	if got, want := format("hubd", bi), "hubd (devel) (rev 0123456789ab, 2026-12-06T17:00:00Z, modified) go1.26.8"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	bi = &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"}}
	if got, want := format("auditq", bi), "auditq v1.2.0 go1.26.8"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}
