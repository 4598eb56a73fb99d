package backups

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/repo"
	"github.com/levqor/levqor/pkg/retention"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// Limits on the fields of sources and snapshots.
const (
	NameMaxLength     = 100
	ScheduleMaxLength = 100
	ReasonMaxLength   = 500
	TagMaxLength      = 64
	TagsMax           = 32
	// FutureSkew is how far after the command a snapshot's time may lie:
	// clocks differ, but a snapshot from tomorrow is a mistake.
	FutureSkew = 24 * time.Hour
)

var kindRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// CreateSourceParams are the parameters of retention.create_source, the
// body of POST /v1/sources.
type CreateSourceParams struct {
	// AccountID is the account the source belongs to. Operators must give
	// it; an account key may leave it out (or give its own).
	AccountID string `json:"account_id,omitempty"`
	// Name is unique within the account.
	Name string `json:"name"`
	// Kind says what is backed up: a lower-case word such as postgres,
	// mysql, files or s3.
	Kind string `json:"kind"`
	// Schedule is when the source is backed up: a cron spec (5 fields, or
	// 6 with seconds, or @daily), read in TimeZone.
	Schedule string `json:"schedule"`
	// TimeZone is an IANA zone name; empty means UTC.
	TimeZone string `json:"time_zone,omitempty"`
	// Policy is the source's own retention policy, within its tier's
	// limits; absent or null follows the tier's default policy.
	Policy json.RawMessage `json:"policy,omitempty"`
	// Config is the settings of a runnable kind (RunnableKinds):
	// {"path": …} for a directory source, {"dsn": …} for a postgres one.
	// Only operators create runnable sources.
	Config json.RawMessage `json:"config,omitempty"`
	// ByOperator is set by the API from the caller's key, whatever a
	// request body says.
	ByOperator bool `json:"by_operator,omitempty"`
}

// Normalize trims white space and fills the default time zone.
func (p *CreateSourceParams) Normalize() {
	p.AccountID = strings.TrimSpace(p.AccountID)
	p.Name = strings.TrimSpace(p.Name)
	p.Kind = strings.TrimSpace(p.Kind)
	p.Schedule = strings.TrimSpace(p.Schedule)
	p.TimeZone = strings.TrimSpace(p.TimeZone)
	if p.TimeZone == "" {
		p.TimeZone = "UTC"
	}
	if isNull(p.Policy) {
		p.Policy = nil
	}
	if isNull(p.Config) {
		p.Config = nil
	}
}

// Validate returns a 422 *command.Error naming the first bad field. The
// policy's limits depend on the account's tier and are checked by the
// worker (and by the API before it queues the command).
func (p *CreateSourceParams) Validate() error {
	if p.AccountID != "" && !command.ValidID(p.AccountID, store.AccountIDPrefix) {
		return invalid("account_id", "account_id must be an account id (acc_…)")
	}
	if err := command.CheckText("name", p.Name, NameMaxLength, true); err != nil {
		return err
	}
	if !kindRe.MatchString(p.Kind) {
		return invalid("kind", "kind must be a lower-case word of up to 32 letters, digits, '-' or '_' starting with a letter, such as postgres or files")
	}
	runs := Runnable(p.Kind) && (p.Config != nil || p.Kind == KindDirectory)
	if runs && !p.ByOperator {
		return forbidden("kind", fmt.Sprintf("only operators create %s sources that Levqor backs up: its agents set them up (Done-For-You)", p.Kind))
	}
	spec := p.Schedule
	if spec == "" && runs {
		spec = "@daily" // the tier's schedule is filled in by the worker; check the zone
	}
	if err := ValidateSchedule(spec, p.TimeZone); err != nil {
		return err
	}
	if p.Policy != nil {
		if _, err := ParsePolicy(p.Policy); err != nil {
			return err
		}
	}
	return nil
}

// ValidateSchedule checks a backup schedule with the scheduler's own cron
// parser, so that what is accepted here is what the scheduler can run.
func ValidateSchedule(spec, zone string) error {
	switch {
	case spec == "":
		return invalid("schedule", "schedule is required: a cron spec such as \"0 2 * * *\" (02:00 every day) or @daily")
	case len(spec) > ScheduleMaxLength:
		return invalid("schedule", fmt.Sprintf("schedule is longer than %d characters", ScheduleMaxLength))
	}
	j := scheduler.Job{Name: "backup", Spec: spec, TimeZone: zone}
	if _, err := j.Location(); err != nil {
		return invalid("time_zone", fmt.Sprintf("time_zone %q is not an IANA time zone such as Europe/London", zone))
	}
	s, err := j.Schedule()
	if err != nil {
		return invalid("schedule", strings.TrimPrefix(err.Error(), "job backup: "))
	}
	if s.Next(time.Now()).IsZero() {
		return invalid("schedule", fmt.Sprintf("schedule %q never fires", spec))
	}
	return nil
}

// ParsePolicy reads a policy sent in a request. Its errors are 422
// *command.Errors naming the rule: "policy.keep_daily".
func ParsePolicy(raw json.RawMessage) (retention.Policy, error) {
	p, err := retention.ParsePolicy(raw)
	if err != nil {
		var fe *retention.FieldError
		if errors.As(err, &fe) {
			return retention.Policy{}, invalid(policyField(fe.Field), "policy: "+fe.Message)
		}
		return retention.Policy{}, invalid("policy", "policy: "+err.Error())
	}
	return p, nil
}

func policyField(rule string) string {
	if rule == "" {
		return "policy"
	}
	return "policy." + rule
}

// PolicyBody is the body of PUT /v1/sources/{id}/policy.
type PolicyBody struct {
	// Policy is the source's new policy, or null to follow the tier's
	// default policy again. It is required: {} is an error, so that a
	// mistyped body never resets a policy.
	Policy json.RawMessage `json:"policy"`
}

// SetPolicyParams are the parameters of retention.set_policy.
type SetPolicyParams struct {
	SourceID string `json:"source_id"`
	PolicyBody
}

// Validate returns a 422 *command.Error naming the first bad field.
func (p *SetPolicyParams) Validate() error {
	if !command.ValidID(p.SourceID, SourceIDPrefix) {
		return invalid("source_id", "not a source id (src_…)")
	}
	return p.PolicyBody.Validate()
}

// Validate checks the body alone.
func (p *PolicyBody) Validate() error {
	if p.Policy == nil {
		return invalid("policy", `policy is required: a policy object such as {"keep_daily": 7}, or null to follow the tier's default policy`)
	}
	if isNull(p.Policy) {
		return nil
	}
	_, err := ParsePolicy(p.Policy)
	return err
}

// SnapshotBody is the body of POST /v1/sources/{id}/snapshots: a snapshot
// an external backup agent made. Its bytes are either already in the blob
// store (BlobKey, under the account's own prefix "<account id>/") or sent
// inline (ContentBase64, as much as fits in a request body; larger
// backups are uploaded to the blob store first).
type SnapshotBody struct {
	// ID is the snapshot's id, snap_ followed by 26 base32 characters;
	// empty lets Levqor choose one (derived from the command, so a retry
	// records the same snapshot).
	ID string `json:"id,omitempty"`
	// TakenAt is when the snapshot was taken: RFC 3339 with the UTC offset
	// of the machine that took it (retention reads days in that offset).
	TakenAt string `json:"taken_at"`
	// SizeBytes and SHA256 are what the agent says the blob is; when
	// given they must match it.
	SizeBytes *int64 `json:"size_bytes,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	// Tags label the snapshot for keep_tags rules.
	Tags []string `json:"tags,omitempty"`
	// BlobKey names a blob already in the blob store.
	BlobKey string `json:"blob_key,omitempty"`
	// ContentBase64 is the snapshot's bytes, standard base64.
	ContentBase64 string `json:"content_base64,omitempty"`
}

// RecordSnapshotParams are the parameters of retention.record_snapshot.
type RecordSnapshotParams struct {
	SourceID string `json:"source_id"`
	SnapshotBody
}

// Normalize trims white space and lower-cases the checksum.
func (p *SnapshotBody) Normalize() {
	p.ID = strings.TrimSpace(p.ID)
	p.TakenAt = strings.TrimSpace(p.TakenAt)
	p.SHA256 = strings.ToLower(strings.TrimSpace(p.SHA256))
	p.BlobKey = strings.TrimSpace(p.BlobKey)
	for i := range p.Tags {
		p.Tags[i] = strings.TrimSpace(p.Tags[i])
	}
}

// Validate returns a 422 *command.Error naming the first bad field.
func (p *RecordSnapshotParams) Validate() error {
	if !command.ValidID(p.SourceID, SourceIDPrefix) {
		return invalid("source_id", "not a source id (src_…)")
	}
	return p.SnapshotBody.Validate()
}

// Validate checks the body alone.
func (p *SnapshotBody) Validate() error {
	if p.ID != "" && !command.ValidID(p.ID, SnapshotIDPrefix) {
		return invalid("id", "id must be snap_ followed by 26 characters of a-z and 2-7, or left out")
	}
	if _, err := p.Time(); err != nil {
		return err
	}
	if p.SizeBytes != nil && *p.SizeBytes < 0 {
		return invalid("size_bytes", "size_bytes must not be negative")
	}
	if p.SHA256 != "" {
		if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != 32 {
			return invalid("sha256", "sha256 must be 64 hexadecimal characters")
		}
	}
	if len(p.Tags) > TagsMax {
		return invalid("tags", fmt.Sprintf("at most %d tags", TagsMax))
	}
	for i, t := range p.Tags {
		field := fmt.Sprintf("tags[%d]", i)
		if err := command.CheckText(field, t, TagMaxLength, true); err != nil {
			return err
		}
		if strings.ContainsAny(t, ", ") {
			return invalid(field, "a tag must not contain commas or spaces")
		}
		if slices.Index(p.Tags, t) < i {
			return invalid(field, fmt.Sprintf("tag %q is given twice", t))
		}
	}
	switch {
	case p.BlobKey == "" && p.ContentBase64 == "":
		return invalid("content_base64", "give the snapshot's bytes: content_base64, or blob_key for a blob already in the blob store")
	case p.BlobKey != "" && p.ContentBase64 != "":
		return invalid("blob_key", "give content_base64 or blob_key, not both")
	case p.BlobKey != "":
		if err := blob.ValidateKey(p.BlobKey); err != nil {
			return invalid("blob_key", strings.TrimPrefix(err.Error(), "blob: "))
		}
		if repo.IsRepoKey(p.BlobKey) {
			// Its objects are shared by snapshots: one recorded as a
			// snapshot's own blob would be deleted with it.
			return invalid("blob_key", "blob_key names an object of the account's backup repository (<account>/repo/…), which no snapshot may claim as its own")
		}
	default:
		if _, err := p.Content(); err != nil {
			return err
		}
	}
	return nil
}

// Time parses TakenAt.
func (p *SnapshotBody) Time() (time.Time, error) {
	if p.TakenAt == "" {
		return time.Time{}, invalid("taken_at", "taken_at is required: RFC 3339 with a UTC offset, such as 2026-10-25T02:00:00+01:00")
	}
	t, err := time.Parse(time.RFC3339Nano, p.TakenAt)
	if err != nil {
		return time.Time{}, invalid("taken_at", fmt.Sprintf("taken_at %q is not RFC 3339 with a UTC offset, such as 2026-10-25T02:00:00+01:00", clip(p.TakenAt)))
	}
	if t.Year() < 2000 {
		return time.Time{}, invalid("taken_at", "taken_at is before the year 2000")
	}
	return t, nil
}

// Content decodes ContentBase64.
func (p *SnapshotBody) Content() ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(p.ContentBase64)
	if err != nil {
		return nil, invalid("content_base64", "content_base64 is not standard base64")
	}
	return b, nil
}

// Hold targets.
const (
	TargetSnapshot = "snapshot"
	TargetSource   = "source"
)

// HoldBody is the body of placing or releasing a legal hold.
type HoldBody struct {
	// Reason says why: the case, the request, who asked. Required to
	// place a hold, optional to release one.
	Reason string `json:"reason"`
}

// HoldParams are the parameters of retention.place_hold and
// retention.release_hold.
type HoldParams struct {
	// Target is TargetSnapshot or TargetSource, ID the snapshot or source.
	Target string `json:"target"`
	ID     string `json:"id"`
	// ByOperator is set by the API from the caller's key, never from a
	// request body: only operators release holds operators placed.
	ByOperator bool `json:"by_operator"`
	HoldBody
}

// Validate returns a 422 *command.Error naming the first bad field;
// placing needs a reason.
func (p *HoldParams) Validate(placing bool) error {
	switch p.Target {
	case TargetSnapshot:
		if !command.ValidID(p.ID, SnapshotIDPrefix) {
			return invalid("id", "not a snapshot id (snap_…)")
		}
	case TargetSource:
		if !command.ValidID(p.ID, SourceIDPrefix) {
			return invalid("id", "not a source id (src_…)")
		}
	default:
		return invalid("target", "target must be snapshot or source")
	}
	return command.CheckText("reason", p.Reason, ReasonMaxLength, placing)
}

// PlaceHoldParams are the parameters of retention.place_hold: a hold
// with its reason.
type PlaceHoldParams struct{ HoldParams }

// Validate checks the target and requires a reason.
func (p *PlaceHoldParams) Validate() error { return p.HoldParams.Validate(true) }

// ReleaseHoldParams are the parameters of retention.release_hold.
type ReleaseHoldParams struct{ HoldParams }

// Validate checks the target; the reason is optional.
func (p *ReleaseHoldParams) Validate() error { return p.HoldParams.Validate(false) }

// SweepBody is the body of POST /v1/sources/{id}/sweep.
type SweepBody struct {
	// DryRun computes what the sweep would do and changes nothing.
	DryRun bool `json:"dry_run"`
	// MaxShare, operators only, raises the share of snapshots this one
	// sweep may send to the trash (up to 1): how an operator confirms a
	// large deletion that blocked the scheduled sweeps.
	MaxShare *float64 `json:"max_share,omitempty"`
}

// SweepParams are the parameters of retention.sweep.
type SweepParams struct {
	SourceID string `json:"source_id"`
	// ByOperator is set by the API from the caller's key.
	ByOperator bool `json:"by_operator"`
	SweepBody
}

// Validate returns a 422 *command.Error naming the first bad field, or
// 403 for an account key raising the share.
func (p *SweepParams) Validate() error {
	if !command.ValidID(p.SourceID, SourceIDPrefix) {
		return invalid("source_id", "not a source id (src_…)")
	}
	if p.MaxShare != nil {
		if !p.ByOperator {
			return command.Fail(http.StatusForbidden, "forbidden", "max_share", "only operators may raise the share a sweep may delete")
		}
		if *p.MaxShare <= 0 || *p.MaxShare > 1 {
			return invalid("max_share", "max_share must be more than 0 and at most 1")
		}
	}
	return nil
}

// RestoreBody is the body of POST /v1/snapshots/{id}/restore-from-trash.
type RestoreBody struct {
	// Reason says why the snapshot comes back; it becomes the reason of
	// the hold that keeps the next sweep from trashing it again.
	Reason string `json:"reason"`
}

// RestoreParams are the parameters of retention.restore_snapshot.
type RestoreParams struct {
	SnapshotID string `json:"snapshot_id"`
	ByOperator bool   `json:"by_operator"`
	RestoreBody
}

// Validate returns a 422 *command.Error naming the first bad field.
func (p *RestoreParams) Validate() error {
	if !command.ValidID(p.SnapshotID, SnapshotIDPrefix) {
		return invalid("snapshot_id", "not a snapshot id (snap_…)")
	}
	if !p.ByOperator {
		return command.Fail(http.StatusForbidden, "forbidden", "", "only operators restore snapshots from the trash")
	}
	return command.CheckText("reason", p.Reason, ReasonMaxLength, true)
}

func invalid(field, msg string) error {
	return command.Fail(http.StatusUnprocessableEntity, "invalid_field", field, msg)
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || strings.TrimSpace(string(raw)) == "null"
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
