// Package version tells which build of a sessionledger binary is running,
// from the build information the Go toolchain embeds (module version, VCS
// revision and time, whether the tree had local changes). Every binary's
// --version prints Line.
package version

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Line is one line naming the program and its build, for --version:
// "hubd v1.2.0 (rev 1a2b3c4d5e6f, 2026-12-06T17:00:00Z, modified) go1.26.8".
// A binary built from a checkout says "(devel)" for its version; one built
// without VCS information (go run, a test binary) leaves out the revision.
func Line(program string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return program + " (no build information)"
	}
	return format(program, bi)
}

func format(program string, bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var parts []string
	if rev != "" {
		parts = append(parts, "rev "+rev[:min(len(rev), 12)])
	}
	if at != "" {
		parts = append(parts, at)
	}
	if modified {
		parts = append(parts, "modified")
	}
	out := fmt.Sprintf("%s %s", program, v)
	if len(parts) > 0 {
		out += " (" + strings.Join(parts, ", ") + ")"
	}
	return out + " " + bi.GoVersion
}
