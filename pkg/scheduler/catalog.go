package scheduler

import (
	"fmt"
	"strings"
	"time"
)

// The jobs of the catalog. Each name is also its tick's subject under
// levqor.tick.
const (
	// JobHousekeepingPrune prunes the inbox and outbox tables (package
	// housekeeping).
	JobHousekeepingPrune = "housekeeping.prune"
	// JobHousekeepingWatch inspects consumers and the DLQ, exports their
	// gauges and raises ops events (package housekeeping).
	JobHousekeepingWatch = "housekeeping.watch"
	// JobBillingDunning suspends accounts still past due when their grace
	// period ends (package billing).
	JobBillingDunning = "billing.dunning"
	// JobBillingReconcile repairs drift between billing's state and the
	// Stripe API (package billing).
	JobBillingReconcile = "billing.reconcile"
	// JobBillingTrialReminder reminds customers that their trial ends
	// (package billing).
	JobBillingTrialReminder = "billing.trial_reminder"
	// JobBackupSweep applies every backup source's retention policy:
	// trash what it removes, purge what outlived the trash's grace period
	// (package backups). It was called retention.sweep (RenamedJobs).
	JobBackupSweep = "backup.sweep"
	// JobBackupDue publishes a run for every runnable source whose
	// schedule slot has come (package backups).
	JobBackupDue = "backup.due"
	// JobBackupVerify re-reads a sample of snapshots and checks their
	// checksums (package backups).
	JobBackupVerify = "backup.verify"
	// JobBackupOverdue alerts on sources whose last good snapshot is older
	// than their schedule allows (package backups).
	JobBackupOverdue = "backup.overdue"
	// JobBackupReapStaleRuns fails the runs whose worker stopped (package
	// backups).
	JobBackupReapStaleRuns = "backup.reap_stale_runs"
	// JobSupportAutoClose closes the tickets resolved long enough ago
	// with no reply since (package support).
	JobSupportAutoClose = "support.autoclose"
	// JobSupportSLACheck escalates support tickets whose SLA clocks are at
	// risk or breached (package support).
	JobSupportSLACheck = "support.sla_check"
	// JobAccountsErasureReminder tells owners a day ahead that their
	// requested erasure is coming (package accounts).
	JobAccountsErasureReminder = "accounts.erasure_reminder"
	// JobNotifyPrune deletes old notifications and webhook delivery logs
	// (package notify).
	JobNotifyPrune = "notify.prune"
	// JobAccountsOffboard erases the data of accounts whose erasure is
	// due: requested and past its cooling-off, or canceled longer than
	// the offboarding grace (package accounts).
	JobAccountsOffboard = "accounts.offboard"
	// JobBackupRestoreDrill restores entitled sources' snapshots into
	// scratch targets to prove they restore (package backups).
	JobBackupRestoreDrill = "backup.restore_drill"
	// JobBlobGC deletes blobs no snapshot holds and abandoned uploads
	// (package backups).
	JobBlobGC = "blob.gc"
	// JobDFYFollowup chases the Done-For-You work items that stalled
	// (package support).
	JobDFYFollowup = "dfy.followup"
	// JobSelfBackup backs up Levqor's own database into the blob store
	// (package backups).
	JobSelfBackup = "levqor.selfbackup"
)

// Catalog is every periodic job Levqor runs, each with a worker that does
// its work: a job belongs here only once a worker consumes its tick.
// Deployments change specs or disable jobs with Override.
func Catalog() []Job {
	return []Job{
		{
			Name:        JobHousekeepingPrune,
			Spec:        "0 17 3 * * *",
			TimeZone:    "UTC",
			Description: "delete inbox rows and finished commands older than any message that can still be delivered or replayed, and outbox rows published longer ago than the EVENTS stream keeps them",
		},
		{
			Name:        JobHousekeepingWatch,
			Spec:        "0 * * * * *",
			TimeZone:    "UTC",
			Description: "export consumer backlog and DLQ gauges; raise ops.dlq_growing and ops.consumer_stuck events",
		},
		{
			Name:        JobBillingDunning,
			Spec:        "0 0 * * * *",
			TimeZone:    "UTC",
			Description: "suspend accounts still past due whose payment grace period (LEVQOR_DUNNING_GRACE) ended at the slot; backups pause, nothing is deleted",
		},
		{
			Name:        JobBillingReconcile,
			Spec:        "0 30 4 * * *",
			TimeZone:    "UTC",
			Description: "list every subscription from the Stripe API and repair drift from missed webhooks or dashboard changes; needs STRIPE_API_KEY",
		},
		{
			Name:        JobBillingTrialReminder,
			Spec:        "0 10 * * * *",
			TimeZone:    "UTC",
			Description: "raise billing.trial_reminder once per trialing subscription and reminder (LEVQOR_TRIAL_REMINDERS: a week and a day before the trial ends); the customer is told",
		},
		{
			Name:        JobBackupSweep,
			Spec:        "0 5 * * * *",
			TimeZone:    "UTC",
			Description: "apply each backup source's retention policy: trash what it removes (never held, newest or suspended accounts' snapshots; blocked above LEVQOR_SWEEP_MAX_SHARE) and purge blobs past LEVQOR_TRASH_GRACE",
		},
		{
			Name:        JobBackupDue,
			Spec:        "0 * * * * *",
			TimeZone:    "UTC",
			Description: "publish a backup run for each unpaused directory or postgres source whose schedule slot has come and has no run yet (one per slot)",
		},
		{
			Name:        JobBackupVerify,
			Spec:        "0 40 * * * *",
			TimeZone:    "UTC",
			Description: "re-read LEVQOR_VERIFY_SAMPLE snapshots, least recently verified first, and check their SHA-256 and archive checksums; a mismatch marks the snapshot corrupt and raises backup.corrupt",
		},
		{
			Name:        JobBackupOverdue,
			Spec:        "0 */15 * * * *",
			TimeZone:    "UTC",
			Description: "raise backup.overdue once per incident for an unpaused runnable source whose last good snapshot is older than its schedule's interval plus LEVQOR_OVERDUE_GRACE",
		},
		{
			Name:        JobBackupReapStaleRuns,
			Spec:        "0 */5 * * * *",
			TimeZone:    "UTC",
			Description: "fail the runs still marked running with no sign of life for LEVQOR_RUN_REAP_AFTER (their worker stopped): each raises backup.run_failed, and the customer is told",
		},
		{
			Name:        JobNotifyPrune,
			Spec:        "0 25 3 * * *",
			TimeZone:    "UTC",
			Description: "delete the notifications (not pending) and the webhook delivery log older than LEVQOR_NOTIFICATION_RETENTION: people's addresses and what they were told are not kept forever",
		},
		{
			Name:        JobAccountsErasureReminder,
			Spec:        "0 35 * * * *",
			TimeZone:    "UTC",
			Description: "raise accounts.erasure_due once per requested erasure due within LEVQOR_ERASURE_REMIND_BEFORE (24h): its owner is told, and may still cancel it",
		},
		{
			Name:        JobAccountsOffboard,
			Spec:        "0 30 5 * * *",
			TimeZone:    "UTC",
			Description: "erase the data of accounts canceled longer than LEVQOR_OFFBOARD_GRACE ago, and of those whose requested erasure is past its cooling-off (LEVQOR_ERASURE_COOLING_OFF); legal holds block it, saying so; a report is kept",
		},
		{
			Name:        JobBackupRestoreDrill,
			Spec:        "0 15 4 * * *",
			TimeZone:    "UTC",
			Description: "restore the newest good snapshot of each source of the accounts entitled to drills (tier restore_drills, or the dfy_recovery_drill package) into a scratch target every LEVQOR_DRILL_EVERY, check it against its manifest, record the report; a failure opens a ticket",
		},
		{
			Name:        JobBlobGC,
			Spec:        "0 50 3 * * *",
			TimeZone:    "UTC",
			Description: "delete the blobs no snapshot holds that are older than LEVQOR_BLOB_GC_AGE (what a run that died between upload and snapshot left), and the store's abandoned uploads",
		},
		{
			Name:        JobSupportSLACheck,
			Spec:        "0 */2 * * * *",
			TimeZone:    "UTC",
			Description: "escalate support tickets whose SLA clocks are at risk or breached (queue escalations, severity up one step), once per clock and state; raise levqor.event.support.sla_at_risk and .sla_breached",
		},
		{
			Name:        JobSupportAutoClose,
			Spec:        "0 40 * * * *",
			TimeZone:    "UTC",
			Description: "close the tickets resolved longer than LEVQOR_SUPPORT_AUTOCLOSE_AFTER ago with no reply since, and tell the customer",
		},
		{
			Name:        JobDFYFollowup,
			Spec:        "0 20 * * * *",
			TimeZone:    "UTC",
			Description: "chase the Done-For-You work items (tickets a paid package opened) still open with no change for LEVQOR_DFY_FOLLOWUP_AFTER: noted on the ticket, and support.dfy_stalled tells the DFY team",
		},
		{
			Name:        JobSelfBackup,
			Spec:        "0 45 2 * * *",
			TimeZone:    "UTC",
			Description: "back up Levqor's own database (pg_dump, or a copy of the SQLite file) into the blob store under levqor-self/, keeping the newest LEVQOR_SELFBACKUP_KEEP; `levqor selfrestore` brings one back",
		},
	}
}

// RenamedJobs maps the former names of jobs to their names now. Override
// accepts a former name, with a warning, until the release after the one
// that renamed the job.
var RenamedJobs = map[string]string{
	"retention.sweep": JobBackupSweep,
}

// Override applies a deployment's overrides to jobs and returns the result;
// jobs is not modified. spec is "job=cron spec;job2=off", as in
// LEVQOR_SCHEDULE: "off" disables a job, "on" enables it, anything else
// replaces its spec, optionally with a time zone in front
// ("CRON_TZ=Europe/London 0 30 1 * * *"). Unknown jobs and bad specs are
// errors naming LEVQOR_SCHEDULE. A job's former name (RenamedJobs) is
// accepted, and warnings say what to write instead.
func Override(jobs []Job, spec string) (out []Job, warnings []string, err error) {
	out = append([]Job(nil), jobs...)
	for _, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		name, val = strings.TrimSpace(name), strings.TrimSpace(val)
		if !ok || name == "" || val == "" {
			return nil, nil, fmt.Errorf("LEVQOR_SCHEDULE: %q: want job=spec, job=off or job=on", part)
		}
		if now, ok := RenamedJobs[name]; ok {
			warnings = append(warnings, fmt.Sprintf("LEVQOR_SCHEDULE: job %q is now called %q; write %s=%s (the old name is accepted until the next release)", name, now, now, val))
			name = now
		}
		i := indexOf(out, name)
		if i < 0 {
			return nil, nil, fmt.Errorf("LEVQOR_SCHEDULE: no job named %q (jobs: %s)", name, strings.Join(names(out), ", "))
		}
		switch val {
		case "off":
			out[i].Disabled = true
			continue
		case "on":
			out[i].Disabled = false
			continue
		}
		j := out[i]
		j.Spec = val
		for _, prefix := range []string{"CRON_TZ=", "TZ="} {
			if rest, ok := strings.CutPrefix(val, prefix); ok {
				zone, cronSpec, _ := strings.Cut(rest, " ")
				j.TimeZone, j.Spec = zone, strings.TrimSpace(cronSpec)
				break
			}
		}
		if _, err := j.Schedule(); err != nil {
			return nil, nil, fmt.Errorf("LEVQOR_SCHEDULE: %w", err)
		}
		out[i] = j
	}
	return out, warnings, nil
}

// Lookup returns the job called name.
func Lookup(jobs []Job, name string) (Job, bool) {
	if i := indexOf(jobs, name); i >= 0 {
		return jobs[i], true
	}
	return Job{}, false
}

func indexOf(jobs []Job, name string) int {
	for i := range jobs {
		if jobs[i].Name == name {
			return i
		}
	}
	return -1
}

func names(jobs []Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.Name
	}
	return out
}

// MostFrequent returns how often a tick should arrive when the scheduler
// runs: over the next ten slots of each enabled job, the longest gap
// between two of them, and of those the shortest. ok is false when no job
// is enabled.
func MostFrequent(jobs []Job, now time.Time) (every time.Duration, ok bool) {
	for _, j := range jobs {
		if j.Disabled {
			continue
		}
		s, err := j.Schedule()
		if err != nil {
			continue
		}
		var gap time.Duration
		prev := s.Next(now)
		for i := 0; i < 10 && !prev.IsZero(); i++ {
			next := s.Next(prev)
			if next.IsZero() {
				break
			}
			gap = max(gap, next.Sub(prev))
			prev = next
		}
		if gap > 0 && (!ok || gap < every) {
			every, ok = gap, true
		}
	}
	return every, ok
}
