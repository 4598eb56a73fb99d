package backups

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/retention"
	"github.com/levqor/levqor/pkg/store"
)

// Outcomes of a plan: what a sweep of the source does now.
const (
	// OutcomeDelete: some snapshots go to the trash, or some in the trash
	// are purged.
	OutcomeDelete = "delete"
	// OutcomeNothing: nothing is deleted (the policy keeps everything, or
	// is empty, or everything it removes is protected).
	OutcomeNothing = "nothing_to_delete"
	// OutcomeBlocked: the policy would remove more than the allowed share
	// of the source at once; nothing is deleted and operators are alerted.
	OutcomeBlocked = "blocked"
	// OutcomeSuspended: billing suspended the account; nothing is deleted
	// or purged while it cannot pay.
	OutcomeSuspended = "suspended"
)

// Decisions about one snapshot.
const (
	DecisionKeep  = "keep"
	DecisionTrash = "trash"
	DecisionPurge = "purge"
)

// Reasons the guards add. They are part of the API's answers and of the
// audit trail.
const (
	ReasonNotKept     = "not kept by any rule of the policy"
	ReasonNewestGood  = "the newest good snapshot of a source is never deleted"
	ReasonSuspended   = "the account is suspended: nothing is deleted while it cannot pay"
	ReasonEmptyPolicy = "the policy is empty: nothing is deleted"
	ReasonInterrupted = "finishing a purge that was interrupted"
	ReasonCorrupt     = "verification found the snapshot corrupt: it does not count as a good snapshot"
)

// PlanEntry is one snapshot in a plan and what happens to it.
type PlanEntry struct {
	ID         string     `json:"id"`
	TakenAt    time.Time  `json:"taken_at"`
	Tags       []string   `json:"tags"`
	SizeBytes  int64      `json:"size_bytes"`
	State      string     `json:"state"`
	PurgeAfter *time.Time `json:"purge_after,omitempty"`
	// Integrity is what verification found (unverified, verified,
	// corrupt).
	Integrity string `json:"integrity,omitempty"`
	// Decision is DecisionKeep, DecisionTrash or DecisionPurge.
	Decision string `json:"decision"`
	// Reasons say why: the policy's reasons for a kept snapshot ("daily
	// snapshot"), ReasonNotKept for one it removes, and the guards that
	// protect it (holds, the newest snapshot, a suspended account).
	Reasons []string `json:"reasons"`
	// BlobKey is where its bytes are; the sweep needs it, the API does
	// not show it here.
	BlobKey string `json:"-"`
}

// PlanCounts sums a plan up.
type PlanCounts struct {
	// Active is the number of active snapshots; Keep and Trash split them.
	Active int `json:"active"`
	Keep   int `json:"keep"`
	Trash  int `json:"trash"`
	// InTrash is the number of snapshots already in the trash; Purge of
	// them (and of interrupted purges) are purged now.
	InTrash int `json:"in_trash"`
	Purge   int `json:"purge"`
	// Blocked is how many snapshots the share limit kept from the trash.
	Blocked int `json:"blocked"`
}

// Plan is what a sweep of one source does at one time, and why: the
// answer of the dry-run endpoint and of a sweep.
type Plan struct {
	SourceID  string    `json:"source_id"`
	AccountID string    `json:"account_id"`
	At        time.Time `json:"at"`
	Effective
	// AccountStatus is the account's billing status.
	AccountStatus string `json:"account_status"`
	// MaxShare is the largest share of the active snapshots one sweep may
	// send to the trash.
	MaxShare float64 `json:"max_share"`
	Outcome  string  `json:"outcome"`
	// Message says what happens, in words.
	Message string     `json:"message"`
	Counts  PlanCounts `json:"counts"`
	// Snapshots are the active snapshots, newest first.
	Snapshots []PlanEntry `json:"snapshots"`
	// Purge lists the snapshots in the trash whose grace period is over,
	// and purges a crash interrupted, with what happens to them.
	Purge []PlanEntry `json:"purge"`
}

// DecideInput is everything a plan depends on.
type DecideInput struct {
	Source  *store.BackupSource
	Account *store.Account
	// Snapshots of the source in any state.
	Snapshots []store.Snapshot
	// Holds are the active holds on the source and its snapshots.
	Holds []store.LegalHold
	// Now is the time the sweep acts at (a tick's slot).
	Now time.Time
	// MaxShare bounds the share of active snapshots sent to the trash at
	// once; zero means MaxShareDefault.
	MaxShare float64
	// Policy, when set, replaces the source's effective policy (a preview).
	Policy *Effective
}

// Decide computes the plan. It is pure: the sweep commits what it returns,
// and the dry-run endpoint shows it. The safety rules, in order:
//
//  1. a suspended account keeps everything: nothing is trashed or purged;
//  2. an empty policy deletes nothing;
//  3. a held snapshot, or any snapshot of a held source, is never trashed
//     or purged;
//  4. the newest active snapshot of a source is never trashed;
//  5. if more than MaxShare of the active snapshots would go to the trash,
//     none does, nor is anything purged: the sweep is blocked.
//
// Purges that a crash interrupted (state purging) are finished unless the
// account is suspended: their deletion was decided and audited already.
func Decide(in DecideInput) (*Plan, error) {
	var eff Effective
	if in.Policy != nil {
		eff = *in.Policy
	} else {
		var err error
		if eff, err = EffectivePolicy(in.Source, in.Account); err != nil {
			return nil, err
		}
	}
	maxShare := in.MaxShare
	if maxShare <= 0 {
		maxShare = MaxShareDefault
	}
	p := &Plan{
		SourceID: in.Source.ID, AccountID: in.Source.AccountID, At: in.Now.UTC(), Effective: eff,
		AccountStatus: in.Account.Status, MaxShare: maxShare,
		Snapshots: []PlanEntry{}, Purge: []PlanEntry{},
	}
	suspended := in.Account.Status == store.AccountStatusSuspended || in.Account.Suspension != nil
	empty := eff.Policy.IsEmpty()

	var sourceHold *store.LegalHold
	snapHolds := map[string]store.LegalHold{}
	for _, h := range in.Holds {
		if h.ReleasedAt != nil {
			continue
		}
		if h.SnapshotID == "" {
			sourceHold = &h
		} else {
			snapHolds[h.SnapshotID] = h
		}
	}
	holdReason := func(id string) string {
		if sourceHold != nil {
			return fmt.Sprintf("legal hold on the source (%s): %s", sourceHold.ID, sourceHold.Reason)
		}
		if h, ok := snapHolds[id]; ok {
			return fmt.Sprintf("legal hold %s: %s", h.ID, h.Reason)
		}
		return ""
	}

	var active, trash, purging []store.Snapshot
	for _, s := range in.Snapshots {
		switch s.State {
		case store.SnapshotActive:
			active = append(active, s)
		case store.SnapshotTrash:
			trash = append(trash, s)
		case store.SnapshotPurging:
			purging = append(purging, s)
		}
	}
	newestFirst := func(a, b store.Snapshot) int {
		if c := b.TakenAt.Compare(a.TakenAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	}
	slices.SortFunc(active, newestFirst)
	slices.SortFunc(trash, newestFirst)
	slices.SortFunc(purging, newestFirst)

	snaps := make([]retention.Snapshot, len(active))
	for i, s := range active {
		snaps[i] = retention.Snapshot{ID: s.ID, Time: s.TakenAt, Tags: s.Tags}
	}
	res, err := retention.Plan(eff.Policy, snaps, retention.Options{Now: in.Now})
	if err != nil {
		return nil, fmt.Errorf("planning source %s: %w", in.Source.ID, err)
	}

	// The newest good snapshot is the newest one verification has not
	// found corrupt: a corrupt snapshot protects nothing.
	newestGood := ""
	for _, s := range active {
		if s.Integrity != store.SnapshotCorrupt {
			newestGood = s.ID
			break
		}
	}
	trashing := 0
	for _, s := range active {
		e := entry(s)
		if reasons, kept := res.Reasons[s.ID]; kept {
			e.Decision, e.Reasons = DecisionKeep, append([]string(nil), reasons...)
			if r := holdReason(s.ID); r != "" {
				e.Reasons = append(e.Reasons, r)
			}
			if s.Integrity == store.SnapshotCorrupt {
				e.Reasons = append(e.Reasons, ReasonCorrupt)
			}
		} else {
			e.Decision, e.Reasons = DecisionTrash, []string{ReasonNotKept}
			if s.Integrity == store.SnapshotCorrupt {
				e.Reasons = append(e.Reasons, ReasonCorrupt)
			}
			switch r := holdReason(s.ID); {
			case suspended:
				e.Decision, e.Reasons = DecisionKeep, append(e.Reasons, ReasonSuspended)
			case r != "":
				e.Decision, e.Reasons = DecisionKeep, append(e.Reasons, r)
			case s.ID == newestGood:
				e.Decision, e.Reasons = DecisionKeep, append(e.Reasons, ReasonNewestGood)
			default:
				trashing++
			}
		}
		p.Snapshots = append(p.Snapshots, e)
	}
	blocked := !suspended && trashing > 0 && float64(trashing) > maxShare*float64(len(active))
	blockedMessage := fmt.Sprintf("sweep blocked: it would send %d of %d active snapshots to the trash, more than the %s one sweep may remove; an operator must confirm",
		trashing, len(active), percent(maxShare))
	blockedReason := fmt.Sprintf("sweep blocked: more than %s of the snapshots at once", percent(maxShare))
	if blocked {
		for i := range p.Snapshots {
			if p.Snapshots[i].Decision == DecisionTrash {
				p.Snapshots[i].Decision = DecisionKeep
				p.Snapshots[i].Reasons = append(p.Snapshots[i].Reasons, blockedReason)
			}
		}
	}

	for _, s := range trash {
		if s.PurgeAfter == nil || s.PurgeAfter.After(in.Now) {
			continue
		}
		e := entry(s)
		e.Decision, e.Reasons = DecisionPurge, []string{fmt.Sprintf("in the trash since %s; its grace period ended at %s",
			stamp(s.TrashedAt), stamp(s.PurgeAfter))}
		switch r := holdReason(s.ID); {
		case suspended:
			e.Decision, e.Reasons = DecisionKeep, append(e.Reasons, ReasonSuspended)
		case empty:
			e.Decision, e.Reasons = DecisionKeep, append(e.Reasons, ReasonEmptyPolicy)
		case blocked:
			e.Decision, e.Reasons = DecisionKeep, append(e.Reasons, blockedReason)
		case r != "":
			e.Decision, e.Reasons = DecisionKeep, append(e.Reasons, r)
		}
		p.Purge = append(p.Purge, e)
	}
	for _, s := range purging {
		e := entry(s)
		e.Decision, e.Reasons = DecisionPurge, []string{ReasonInterrupted}
		if suspended {
			e.Decision, e.Reasons = DecisionKeep, append(e.Reasons, ReasonSuspended)
		}
		p.Purge = append(p.Purge, e)
	}

	p.Counts = PlanCounts{Active: len(active), InTrash: len(trash)}
	if blocked {
		p.Counts.Blocked = trashing
	}
	for _, e := range p.Snapshots {
		if e.Decision == DecisionTrash {
			p.Counts.Trash++
		} else {
			p.Counts.Keep++
		}
	}
	for _, e := range p.Purge {
		if e.Decision == DecisionPurge {
			p.Counts.Purge++
		}
	}
	switch {
	case suspended:
		p.Outcome, p.Message = OutcomeSuspended, ReasonSuspended
	case blocked:
		p.Outcome, p.Message = OutcomeBlocked, blockedMessage
	case p.Counts.Trash > 0 || p.Counts.Purge > 0:
		p.Outcome = OutcomeDelete
		p.Message = fmt.Sprintf("%d of %d active snapshots go to the trash, where they can be restored until their grace period ends; %d in the trash are purged (their blobs deleted)",
			p.Counts.Trash, p.Counts.Active, p.Counts.Purge)
	case empty:
		p.Outcome, p.Message = OutcomeNothing, ReasonEmptyPolicy
	default:
		p.Outcome, p.Message = OutcomeNothing, fmt.Sprintf("the policy keeps all %d active snapshots; nothing in the trash is due for purging", p.Counts.Active)
	}
	return p, nil
}

// Held reports whether the snapshot is under an active hold, its own or
// its source's.
func Held(holds []store.LegalHold, snapshotID string) bool {
	for _, h := range holds {
		if h.ReleasedAt == nil && (h.SnapshotID == "" || h.SnapshotID == snapshotID) {
			return true
		}
	}
	return false
}

func entry(s store.Snapshot) PlanEntry {
	tags := s.Tags
	if tags == nil {
		tags = []string{}
	}
	return PlanEntry{ID: s.ID, TakenAt: s.TakenAt, Tags: tags, SizeBytes: s.SizeBytes, State: s.State, PurgeAfter: s.PurgeAfter, BlobKey: s.BlobKey, Integrity: s.Integrity}
}

func stamp(t *time.Time) string {
	if t == nil {
		return "?"
	}
	return t.UTC().Format(time.RFC3339)
}

func percent(share float64) string {
	return fmt.Sprintf("%g%%", share*100)
}
