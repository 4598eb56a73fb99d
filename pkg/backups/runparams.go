package backups

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/store"
)

// RunDomain is the command domain of the work that streams data:
// levqor.cmd.backup.<action>, consumed by backup-cmd so that long runs and
// restores never hold up the quick retention commands.
const RunDomain = "backup"

// Actions of the backup domain.
const (
	// ActionRun backs a source up now.
	ActionRun = "run"
	// ActionRestoreData restores a snapshot's data to a path or database
	// (not to be confused with ActionRestore, which brings a snapshot back
	// from the trash).
	ActionRestoreData = "restore_data"
	// ActionVerifySnapshot re-reads one snapshot and checks its checksums.
	ActionVerifySnapshot = "verify_snapshot"
	// ActionPause and ActionResume stop and restart a source's scheduled
	// runs.
	ActionPause  = "pause_source"
	ActionResume = "resume_source"
	// ActionSetConfig replaces a runnable source's config.
	ActionSetConfig = "set_config"
)

// RunIDPrefix starts every run id.
const RunIDPrefix = "run_"

// RunID is the id of the run command commandID carries out: the command's
// own id with run_ in front instead of cmd_, so that a client knows it as
// soon as the command is accepted.
func RunID(commandID string) string {
	return RunIDPrefix + strings.TrimPrefix(commandID, command.IDPrefix)
}

// CommandOfRun is the inverse of RunID.
func CommandOfRun(runID string) string {
	return command.IDPrefix + strings.TrimPrefix(runID, RunIDPrefix)
}

// RunParams are the parameters of backup.run.
type RunParams struct {
	SourceID string `json:"source_id"`
	// Trigger is store.RunManual (the API) or store.RunScheduled (the
	// backup.due tick), with the schedule's Slot.
	Trigger string     `json:"trigger"`
	Slot    *time.Time `json:"slot,omitempty"`
}

// Validate returns a 422 *command.Error naming the first bad field.
func (p *RunParams) Validate() error {
	if !command.ValidID(p.SourceID, SourceIDPrefix) {
		return invalid("source_id", "not a source id (src_…)")
	}
	switch p.Trigger {
	case store.RunManual:
		if p.Slot != nil {
			return invalid("slot", "a manual run has no schedule slot")
		}
	case store.RunScheduled:
		if p.Slot == nil {
			return invalid("slot", "a scheduled run needs its slot")
		}
	default:
		return invalid("trigger", "trigger must be manual or schedule")
	}
	return nil
}

// RestoreDataBody is the body of POST /v1/snapshots/{id}/restore: where a
// snapshot's data goes. A directory snapshot goes to TargetPath (under
// LEVQOR_BACKUP_PATHS), a postgres snapshot into the database TargetDSN.
type RestoreDataBody struct {
	// TargetPath is the absolute directory to restore into; it must be
	// empty (or missing) unless Overwrite is set.
	TargetPath string `json:"target_path,omitempty"`
	// TargetDSN is the database to restore into; a secret, never shown
	// unredacted.
	TargetDSN string `json:"target_dsn,omitempty"`
	// Overwrite allows a non-empty target: files (or database objects) of
	// the same name are replaced.
	Overwrite bool `json:"overwrite,omitempty"`
	// Include, when set, restores only these paths of a directory
	// snapshot (files, or directories with all they hold), relative to
	// the snapshot's root.
	Include []string `json:"include,omitempty"`
}

// MaxIncludes bounds the paths one restore includes.
const MaxIncludes = 100

// RestoreDataParams are the parameters of backup.restore_data.
type RestoreDataParams struct {
	SnapshotID string `json:"snapshot_id"`
	// ByOperator is set by the API from the caller's key.
	ByOperator bool `json:"by_operator"`
	RestoreDataBody
}

// Normalize trims white space.
func (p *RestoreDataBody) Normalize() {
	p.TargetPath = strings.TrimSpace(p.TargetPath)
	p.TargetDSN = strings.TrimSpace(p.TargetDSN)
	for i := range p.Include {
		p.Include[i] = strings.TrimSpace(p.Include[i])
	}
}

// CleanSnapshotPath checks a path within a snapshot (field names it in
// errors) and returns it slash-separated, without leading or trailing
// slashes; "" is the root.
func CleanSnapshotPath(field, p string) (string, error) {
	if len(p) > 4096 {
		return "", invalid(field, "a path within a snapshot is at most 4096 bytes")
	}
	if strings.ContainsRune(p, 0) || strings.Contains(p, "\\") {
		return "", invalid(field, "a path within a snapshot is slash-separated, without NUL bytes or backslashes")
	}
	trimmed := strings.Trim(p, "/")
	if trimmed == "" {
		return "", nil
	}
	for _, seg := range strings.Split(trimmed, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", invalid(field, fmt.Sprintf("%q is not a path within the snapshot: no empty, '.' or '..' segments", p))
		}
	}
	return trimmed, nil
}

// Validate returns a 403 for anyone but an operator, or a 422
// *command.Error naming the first bad field. The allow-list of paths is
// checked with CheckPath by the API and again by the worker.
func (p *RestoreDataParams) Validate() error {
	if !command.ValidID(p.SnapshotID, SnapshotIDPrefix) {
		return invalid("snapshot_id", "not a snapshot id (snap_…)")
	}
	if !p.ByOperator {
		return forbidden("", "only operators restore data: Levqor's agents carry restores out (Done-For-You)")
	}
	switch {
	case p.TargetPath == "" && p.TargetDSN == "":
		return invalid("target_path", "give target_path (a directory snapshot) or target_dsn (a postgres snapshot)")
	case p.TargetPath != "" && p.TargetDSN != "":
		return invalid("target_dsn", "give target_path or target_dsn, not both")
	case p.TargetDSN != "" && !keys.IsSealed(p.TargetDSN): // a sealed one was validated before sealing
		return ValidateDSN("target_dsn", p.TargetDSN)
	case len(p.Include) > 0 && p.TargetPath == "":
		return invalid("include", "include selects paths of a directory snapshot: a database is restored whole")
	case len(p.Include) > MaxIncludes:
		return invalid("include", fmt.Sprintf("at most %d paths per restore", MaxIncludes))
	}
	for i, in := range p.Include {
		c, err := CleanSnapshotPath(fmt.Sprintf("include[%d]", i), in)
		if err != nil {
			return err
		}
		if c == "" {
			return invalid(fmt.Sprintf("include[%d]", i), "the snapshot's root is restored by leaving include out")
		}
		p.Include[i] = c
	}
	return nil
}

// RestoreDataResult is what backup.restore_data answers.
type RestoreDataResult struct {
	SnapshotID string `json:"snapshot_id"`
	// Kind is the archive's kind, directory or postgres.
	Kind string `json:"kind"`
	// TargetPath or TargetDSN (redacted) is where the data went.
	TargetPath string `json:"target_path,omitempty"`
	TargetDSN  string `json:"target_dsn,omitempty"`
	Overwrite  bool   `json:"overwrite"`
	// Include are the paths restored, when not the whole snapshot.
	Include []string `json:"include,omitempty"`
	// Files and Bytes count what was restored, every checksum checked.
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	// SHA256 is the blob's checksum, which matched the snapshot's.
	SHA256 string `json:"sha256"`
}

// SnapshotParams names one snapshot: the parameters of
// backup.verify_snapshot.
type SnapshotParams struct {
	SnapshotID string `json:"snapshot_id"`
}

// Validate returns a 422 *command.Error naming the first bad field.
func (p *SnapshotParams) Validate() error {
	if !command.ValidID(p.SnapshotID, SnapshotIDPrefix) {
		return invalid("snapshot_id", "not a snapshot id (snap_…)")
	}
	return nil
}

// SourceParams names one source: the parameters of backup.pause_source
// and backup.resume_source.
type SourceParams struct {
	SourceID string `json:"source_id"`
}

// Validate returns a 422 *command.Error naming the first bad field.
func (p *SourceParams) Validate() error {
	if !command.ValidID(p.SourceID, SourceIDPrefix) {
		return invalid("source_id", "not a source id (src_…)")
	}
	return nil
}

// ConfigBody is the body of PUT /v1/sources/{id}/config.
type ConfigBody struct {
	// Config replaces the source's config, as in CreateSourceParams.
	Config json.RawMessage `json:"config"`
}

// SetConfigParams are the parameters of backup.set_config.
type SetConfigParams struct {
	SourceID   string `json:"source_id"`
	ByOperator bool   `json:"by_operator"`
	ConfigBody
}

// Validate returns a 403 for anyone but an operator, or a 422 naming the
// first bad field; the config itself is checked against the source's
// kind with ParseConfig.
func (p *SetConfigParams) Validate() error {
	if !command.ValidID(p.SourceID, SourceIDPrefix) {
		return invalid("source_id", "not a source id (src_…)")
	}
	if !p.ByOperator {
		return forbidden("", "only operators change what a source backs up")
	}
	if isNull(p.Config) {
		return invalid("config", "config is required")
	}
	return nil
}

// RunView is what the API shows of a run, and what backup.run answers.
type RunView struct {
	store.BackupRun
	// Snapshot is the snapshot a succeeded run recorded.
	Snapshot *store.Snapshot `json:"snapshot,omitempty"`
}

func unprocessable(code, field, msg string) error {
	return command.Fail(http.StatusUnprocessableEntity, code, field, msg)
}
