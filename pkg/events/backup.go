package events

import (
	"time"

	"github.com/levqor/levqor/pkg/retention"
)

// The backups worker's events. Each names an incident, the key
// under which support opens one ticket however often it is reported.
const (
	// NameBackupQuotaExceeded: a backup run stopped at the account's
	// storage quota.
	NameBackupQuotaExceeded Name = "backup.quota_exceeded"
	// NameBackupCorrupt: a snapshot failed its integrity check.
	NameBackupCorrupt Name = "backup.corrupt"
	// NameBackupOverdue: a source has no good snapshot as recent as its
	// schedule promises.
	NameBackupOverdue Name = "backup.overdue"
	// NameSweepBlocked: a retention sweep would have trashed too large a
	// share of a source's snapshots at once, and deleted nothing.
	NameSweepBlocked Name = "backup.sweep_blocked"
	// NameBackupRunFailed: a backup run ended failed. Every failed run
	// raises it, at once, so nobody learns of a failure only when the
	// source goes overdue.
	NameBackupRunFailed Name = "backup.run_failed"
	// NameBackupQuotaWarn: a run took an account's stored bytes past 80%
	// or 95% of its storage quota.
	NameBackupQuotaWarn Name = "backup.quota_warn"
	// NameDrillFailed: a restore drill could not restore a source's
	// snapshot, or what it restored does not match the manifest.
	NameDrillFailed Name = "backup.drill_failed"
)

// QuotaWarnLevels are the shares of the storage quota, in percent, whose
// crossing raises backup.quota_warn, highest first.
var QuotaWarnLevels = []int{95, 80}

// BackupQuotaWarn is the payload of backup.quota_warn.
type BackupQuotaWarn struct {
	AccountID string `json:"account_id"`
	SourceID  string `json:"source_id"`
	RunID     string `json:"run_id"`
	// Level is the share crossed, 80 or 95 (percent).
	Level int `json:"level"`
	// Incident is "quota_warn:<level>:<run id>".
	Incident   string `json:"incident"`
	QuotaBytes int64  `json:"quota_bytes"`
	UsedBytes  int64  `json:"used_bytes"`
	// Tier is the account's tier, "" when it has none.
	Tier string `json:"tier"`
	// Reason says what happened, in words.
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// EventName is NameBackupQuotaWarn.
func (BackupQuotaWarn) EventName() Name { return NameBackupQuotaWarn }

// EventAccount is the source's account.
func (e BackupQuotaWarn) EventAccount() string { return e.AccountID }

// BackupRunFailed is the payload of backup.run_failed.
type BackupRunFailed struct {
	AccountID string `json:"account_id"`
	SourceID  string `json:"source_id"`
	RunID     string `json:"run_id"`
	CommandID string `json:"command_id"`
	// Trigger is manual or scheduled.
	Trigger string `json:"trigger"`
	// Attempts counts the times a worker started the run; the command
	// may still try again (GET /v1/commands/{command_id} says).
	Attempts int `json:"attempts"`
	// Incident is "run_failed:<run id>".
	Incident string `json:"incident"`
	// Reason says what went wrong, in words.
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// EventName is NameBackupRunFailed.
func (BackupRunFailed) EventName() Name { return NameBackupRunFailed }

// EventAccount is the source's account.
func (e BackupRunFailed) EventAccount() string { return e.AccountID }

// BackupQuotaExceeded is the payload of backup.quota_exceeded.
type BackupQuotaExceeded struct {
	AccountID string `json:"account_id"`
	SourceID  string `json:"source_id"`
	RunID     string `json:"run_id"`
	// Incident is "quota:<run id>".
	Incident string `json:"incident"`
	// Reason says what happened, in words.
	Reason     string `json:"reason"`
	QuotaBytes int64  `json:"quota_bytes"`
	UsedBytes  int64  `json:"used_bytes"`
	// Tier is the account's tier, "" when it has none.
	Tier string    `json:"tier"`
	At   time.Time `json:"at"`
}

// EventName is NameBackupQuotaExceeded.
func (BackupQuotaExceeded) EventName() Name { return NameBackupQuotaExceeded }

// EventAccount is the source's account.
func (e BackupQuotaExceeded) EventAccount() string { return e.AccountID }

// BackupCorrupt is the payload of backup.corrupt.
type BackupCorrupt struct {
	AccountID  string `json:"account_id"`
	SourceID   string `json:"source_id"`
	SnapshotID string `json:"snapshot_id"`
	// Incident is "corrupt:<snapshot id>".
	Incident string `json:"incident"`
	// Reason says what the check found, in words.
	Reason    string    `json:"reason"`
	TakenAt   time.Time `json:"taken_at"`
	BlobKey   string    `json:"blob_key"`
	SHA256    string    `json:"sha256"`
	SizeBytes int64     `json:"size_bytes"`
	At        time.Time `json:"at"`
}

// EventName is NameBackupCorrupt.
func (BackupCorrupt) EventName() Name { return NameBackupCorrupt }

// EventAccount is the snapshot's account.
func (e BackupCorrupt) EventAccount() string { return e.AccountID }

// BackupOverdue is the payload of backup.overdue.
type BackupOverdue struct {
	AccountID  string `json:"account_id"`
	SourceID   string `json:"source_id"`
	SourceName string `json:"source_name"`
	// Incident is "overdue:<source>:<last good snapshot id or never>".
	Incident string `json:"incident"`
	// LastGoodAt and LastGoodSnapshotID are nil when the source has no
	// good snapshot.
	LastGoodAt         *time.Time `json:"last_good_at"`
	LastGoodSnapshotID *string    `json:"last_good_snapshot_id"`
	Schedule           string     `json:"schedule"`
	TimeZone           string     `json:"time_zone"`
	// ExpectedEverySeconds is the schedule's interval, GraceSeconds the
	// grace allowed on top of it.
	ExpectedEverySeconds int64 `json:"expected_every_seconds"`
	GraceSeconds         int64 `json:"grace_seconds"`
	// Reason says what is late, in words.
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// EventName is NameBackupOverdue.
func (BackupOverdue) EventName() Name { return NameBackupOverdue }

// EventAccount is the source's account.
func (e BackupOverdue) EventAccount() string { return e.AccountID }

// SweepBlocked is the payload of backup.sweep_blocked.
type SweepBlocked struct {
	AccountID  string `json:"account_id"`
	SourceID   string `json:"source_id"`
	SourceName string `json:"source_name"`
	// WouldTrash of Active snapshots is what the sweep would have
	// trashed; MaxShare is the share it may.
	WouldTrash int     `json:"would_trash"`
	Active     int     `json:"active"`
	MaxShare   float64 `json:"max_share"`
	// Policy is the effective policy, from PolicyOrigin ("tier" or
	// "source").
	Policy       retention.Policy `json:"policy"`
	PolicyOrigin string           `json:"policy_origin"`
	Tier         string           `json:"tier"`
	// Message says what happened, in words.
	Message string    `json:"message"`
	At      time.Time `json:"at"`
	// Actor is who ran the sweep ("scheduler", an operator's key).
	Actor string `json:"actor"`
}

// EventName is NameSweepBlocked.
func (SweepBlocked) EventName() Name { return NameSweepBlocked }

// EventAccount is the source's account.
func (e SweepBlocked) EventAccount() string { return e.AccountID }

// DrillFailed is the payload of backup.drill_failed.
type DrillFailed struct {
	AccountID  string `json:"account_id"`
	SourceID   string `json:"source_id"`
	SnapshotID string `json:"snapshot_id"`
	DrillID    string `json:"drill_id"`
	// Incident is one per drill.
	Incident string    `json:"incident"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// EventName is NameDrillFailed.
func (DrillFailed) EventName() Name { return NameDrillFailed }

// EventAccount is the source's account.
func (e DrillFailed) EventAccount() string { return e.AccountID }
