package backups

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/store"
)

// HandleEvent follows billing's events (an inbox.TxHandler, so each is
// applied once). Sweeps read the account's entitlements and status when
// they run, so nothing needs re-planning here; what changes is recorded in
// the audit trail of each of the account's sources, so that a customer
// can see why their retention changed:
//
//   - billing.entitlements_changed with a different tier policy: the new
//     default policy, and what it means for each source (a source policy
//     beyond the new tier's limits is cut to them);
//   - billing.account_status_changed into or out of suspended: deletion
//     pauses or resumes.
//
// Other billing events do not concern retention and are acknowledged.
func (w *Worker) HandleEvent(ctx context.Context, tx *store.Tx, m *bus.Message) error {
	what, _ := w.topology().Unprefixed(bus.Events, m.Subject)
	switch events.Name(what) {
	case events.NameEntitlementsChanged:
		ev, err := events.Decode[events.EntitlementsChanged](m)
		if err != nil {
			return err
		}
		if err := completeBilling(what, &ev.Billing, m); err != nil {
			return err
		}
		return w.entitlementsChanged(ctx, tx, m, ev)
	case events.NameAccountStatusChanged:
		ev, err := events.Decode[events.AccountStatusChanged](m)
		if err != nil {
			return err
		}
		if err := completeBilling(what, &ev.Billing, m); err != nil {
			return err
		}
		return w.statusChanged(ctx, tx, m, ev)
	default:
		return nil
	}
}

// completeBilling fills in what billing event what left out, from its
// message: the account from the Levqor-Account header, the time from when
// it was published. An event that names no account is permanently bad.
func completeBilling(what string, b *events.Billing, m *bus.Message) error {
	if b.AccountID == "" {
		b.AccountID = m.Account()
	}
	if b.AccountID == "" {
		return bus.Permanentf("%s names no account", what)
	}
	if b.At.IsZero() {
		b.At = m.Published
	}
	return nil
}

func (w *Worker) entitlementsChanged(ctx context.Context, tx *store.Tx, m *bus.Message, ev events.EntitlementsChanged) error {
	prev, err := Entitlements(ev.PreviousEntitlements)
	if err != nil {
		return bus.Permanentf("previous_entitlements: %v", err)
	}
	cur, err := Entitlements(ev.Entitlements)
	if err != nil {
		return bus.Permanentf("entitlements: %v", err)
	}
	prevPolicy, _ := json.Marshal(prev.Retention)
	curPolicy, _ := json.Marshal(cur.Retention)
	if bytes.Equal(prevPolicy, curPolicy) && deref(ev.PreviousTier) == deref(ev.Tier) {
		return nil
	}
	sources, err := tx.SourcesOfAccount(ctx, ev.AccountID)
	if err != nil {
		return err
	}
	reason := fmt.Sprintf("the account's tier changed from %s to %s: its default retention policy is now %s (was %s)",
		tierName(ev.PreviousTier), tierName(ev.Tier), curPolicy, prevPolicy)
	recorded := 0
	for _, src := range sources {
		if !existedAt(&src, ev.At) {
			// Created after the change (the event reached this worker
			// late): its trail must not say the tier changed before the
			// source existed. Its policy follows the account's tier
			// whatever the trail says.
			continue
		}
		recorded++
		eff, err := EffectivePolicy(&src, &store.Account{ID: ev.AccountID, Entitlements: ev.Entitlements})
		if err != nil {
			return err
		}
		policy, err := json.Marshal(eff.Policy)
		if err != nil {
			return err
		}
		detail, err := json.Marshal(map[string]any{
			"previous_tier": ev.PreviousTier, "tier": ev.Tier, "previous_tier_policy": json.RawMessage(prevPolicy),
			"tier_policy": json.RawMessage(curPolicy), "policy_origin": eff.Origin, "event_id": m.ID(),
		})
		if err != nil {
			return err
		}
		if _, err := tx.AppendRetentionAudit(ctx, store.RetentionAudit{
			AccountID: src.AccountID, SourceID: src.ID, Action: AuditDefaultChanged, Actor: "billing",
			Policy: policy, Reasons: append([]string{reason}, eff.Notes...), Detail: detail, At: ev.At,
		}); err != nil {
			return err
		}
	}
	if recorded > 0 {
		bus.Logger(ctx).WithField("account_id", ev.AccountID).WithField("sources", recorded).Info("tier policy change recorded")
	}
	return nil
}

func (w *Worker) statusChanged(ctx context.Context, tx *store.Tx, m *bus.Message, ev events.AccountStatusChanged) error {
	var action, reason string
	switch {
	case ev.Status == store.AccountStatusSuspended && ev.PreviousStatus != store.AccountStatusSuspended:
		action, reason = AuditRetentionPaused, "billing suspended the account: sweeps delete and purge nothing until it is active again"
		if ev.Reason != "" {
			reason = "the account was " + ev.Reason + "; sweeps delete and purge nothing until it is active again"
		}
	case ev.PreviousStatus == store.AccountStatusSuspended && ev.Status != store.AccountStatusSuspended:
		action, reason = AuditRetentionResumed, fmt.Sprintf("the account is %s again: sweeps apply its retention policies", ev.Status)
	default:
		return nil
	}
	if action == AuditRetentionResumed {
		acc, err := tx.GetAccount(ctx, ev.AccountID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err == nil && acc.Suspension != nil {
			return nil // an operator's suspension still keeps everything (a canceled account's)
		}
	}
	sources, err := tx.SourcesOfAccount(ctx, ev.AccountID)
	if err != nil {
		return err
	}
	detail, err := json.Marshal(map[string]any{"status": ev.Status, "previous_status": ev.PreviousStatus, "event_id": m.ID()})
	if err != nil {
		return err
	}
	for _, src := range sources {
		if !existedAt(&src, ev.At) {
			continue // its trail starts with the status it was created under
		}
		if _, err := tx.AppendRetentionAudit(ctx, store.RetentionAudit{
			AccountID: src.AccountID, SourceID: src.ID, Action: action, Actor: "billing",
			Reasons: []string{reason}, Detail: detail, At: ev.At,
		}); err != nil {
			return err
		}
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func tierName(s *string) string {
	if s == nil || *s == "" {
		return "no tier"
	}
	return *s
}

// existedAt reports whether src existed when a change it learns of late
// happened (at; zero when not known).
func existedAt(src *store.BackupSource, at time.Time) bool {
	return at.IsZero() || !src.CreatedAt.After(at)
}
