package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

func init() {
	register("version", "print the module version, the commit it was built from and the Go version", runVersion)
}

// VersionInfo is what `levqor version` reports, read from the build
// information the Go toolchain embeds in the binary.
type VersionInfo struct {
	// Module is the main module's version: a tag such as v1.2.0 for a
	// released build, "(devel)" for a build from a checkout.
	Module string `json:"module"`
	// Commit is the VCS revision the binary was built from; "" when the
	// build had no VCS information (go run, a build outside a checkout).
	Commit string `json:"commit,omitempty"`
	// Modified is true when the checkout had uncommitted changes.
	Modified bool `json:"modified,omitempty"`
	// CommitTime is the revision's commit time, RFC 3339.
	CommitTime string `json:"commit_time,omitempty"`
	// Go is the Go version that built the binary.
	Go string `json:"go"`
}

// Version reads the binary's build information.
func Version() VersionInfo {
	v := VersionInfo{Module: "(unknown)", Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Module = bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		case "vcs.time":
			v.CommitTime = s.Value
		}
	}
	return v
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer, _ Options) error {
	fs := newFlags("version", "version [--json]", stdout)
	asJSON := fs.Bool("json", false, "print the version as JSON")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	v := Version()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	commit := v.Commit
	if commit == "" {
		commit = "unknown (built without VCS information)"
	} else if v.Modified {
		commit += " (with uncommitted changes)"
	}
	fmt.Fprintf(stdout, "levqor %s\ncommit %s\n%s\n", v.Module, commit, v.Go)
	return nil
}
