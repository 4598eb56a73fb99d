package backups

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/retention"
	"github.com/levqor/levqor/pkg/store"
)

// SourceView is the API's representation of a source: the source with the
// policy its sweeps apply and where that comes from, and, when read, its
// snapshot counts and active holds.
type SourceView struct {
	store.BackupSource
	// EffectivePolicy is the policy sweeps apply (see EffectivePolicy).
	EffectivePolicy retention.Policy `json:"effective_policy"`
	// PolicyOrigin is OriginSource or OriginTier.
	PolicyOrigin string `json:"policy_origin"`
	// Tier is the account's tier, if it has one.
	Tier string `json:"tier,omitempty"`
	// PolicyNotes explain cuts made to the source's policy.
	PolicyNotes []string `json:"policy_notes,omitempty"`
	// Snapshots counts the source's snapshots by state.
	Snapshots map[string]store.SnapshotTally `json:"snapshots,omitempty"`
	// Holds are the active holds on the source and its snapshots.
	Holds []store.LegalHold `json:"holds,omitempty"`
	// Runnable is true for sources Levqor backs up itself (directory, and
	// postgres with a DSN); the others are record-only catalog entries.
	Runnable bool `json:"runnable"`
	// Config is a runnable source's config, its DSN's password redacted.
	Config *SourceConfig `json:"config,omitempty"`
}

// NewSourceView describes src of account acc. Its config is shown
// redacted: a DSN's password never leaves the worker.
func NewSourceView(src *store.BackupSource, acc *store.Account) (SourceView, error) {
	eff, err := EffectivePolicy(src, acc)
	if err != nil {
		return SourceView{}, err
	}
	v := SourceView{BackupSource: *src, EffectivePolicy: eff.Policy, PolicyOrigin: eff.Origin, Tier: eff.Tier, PolicyNotes: eff.Notes,
		Runnable: Runs(src)}
	if len(src.Config) > 0 {
		if c, err := SourceConfigOf(src); err == nil {
			r := c.Redacted()
			v.Config = &r
		}
	}
	return v, nil
}

// RestoreResult is what retention.restore_snapshot answers.
type RestoreResult struct {
	Snapshot store.Snapshot `json:"snapshot"`
	// Hold keeps the restored snapshot from the next sweep until someone
	// releases it.
	Hold store.LegalHold `json:"hold"`
}

func actorOf(e *command.Envelope) string { return e.Actor() }

func notFound(field, msg string) error {
	return command.Fail(http.StatusNotFound, "not_found", field, msg)
}

func conflict(code, field, msg string) error {
	return command.Fail(http.StatusConflict, code, field, msg)
}

func blobsMissing() error {
	return command.Fail(http.StatusServiceUnavailable, "blobs_not_configured", "", ErrBlobsNotConfiguredMessage)
}

// audit writes one entry for command e within tx.
func audit(ctx context.Context, tx *store.Tx, e *command.Envelope, sourceID, snapshotID, action string, policy *retention.Policy, reasons []string, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	detail["command_id"] = e.ID
	d, err := json.Marshal(detail)
	if err != nil {
		return err
	}
	var p json.RawMessage
	if policy != nil {
		if p, err = json.Marshal(policy); err != nil {
			return err
		}
	}
	_, err = tx.AppendRetentionAudit(ctx, store.RetentionAudit{
		AccountID: e.AccountID, SourceID: sourceID, SnapshotID: snapshotID, Action: action, Actor: actorOf(e),
		Policy: p, Reasons: reasons, Detail: d, At: time.Now(),
	})
	return err
}

func (w *Worker) createSource(_ context.Context, e *command.Envelope, p CreateSourceParams) (command.Effect, error) {
	switch {
	case e.AccountID == "":
		return nil, invalid("account_id", "account_id is required: the account the source belongs to")
	case p.AccountID != "" && p.AccountID != e.AccountID:
		return nil, invalid("account_id", "account_id does not match the command's account")
	}
	var own *retention.Policy
	if p.Policy != nil {
		pol, err := ParsePolicy(p.Policy)
		if err != nil {
			return nil, err
		}
		own = &pol
	}
	cfg, err := ParseConfig(p.Kind, p.Config, w.settings().AllowedPaths, w.settings().ProtectedPaths...)
	if err != nil {
		return nil, err
	}
	var config json.RawMessage
	if Runnable(p.Kind) && p.Config != nil {
		if config, err = json.Marshal(cfg); err != nil {
			return nil, err
		}
	}
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		if err := tx.LockAccountForSources(ctx, e.AccountID); errors.Is(err, store.ErrNotFound) {
			return command.Outcome{}, notFound("account_id", "no account "+e.AccountID)
		} else if err != nil {
			return command.Outcome{}, err
		}
		acc, err := tx.GetAccount(ctx, e.AccountID)
		if err != nil {
			return command.Outcome{}, err
		}
		ent, err := Entitlements(acc.Entitlements)
		if err != nil {
			return command.Outcome{}, err
		}
		n, err := tx.CountSources(ctx, acc.ID)
		if err != nil {
			return command.Outcome{}, err
		}
		if n >= ent.Sources {
			msg := fmt.Sprintf("the %s tier allows %d backup sources and the account has %d; an extra_source add-on or a higher tier allows more", ent.Tier, ent.Sources, n)
			if ent.Tier == "" {
				msg = "the account has no subscription, so no backup sources: subscribe to a tier first"
			}
			return command.Outcome{}, command.Fail(http.StatusUnprocessableEntity, "source_limit_reached", "", msg)
		}
		var raw json.RawMessage
		if own != nil {
			if fe := CheckWithin(*own, ent.Retention, ent.Tier); fe != nil {
				return command.Outcome{}, invalid(policyField(fe.Field), fe.Message)
			}
			if raw, err = json.Marshal(own); err != nil {
				return command.Outcome{}, err
			}
		}
		schedule := p.Schedule
		if schedule == "" {
			schedule = DefaultSchedule(ent.Tier)
		}
		src := store.BackupSource{
			ID: derivedID(SourceIDPrefix, "source", e.ID), AccountID: acc.ID, Name: p.Name, Kind: p.Kind,
			Schedule: schedule, TimeZone: p.TimeZone, Policy: raw, Config: config, CreatedAt: time.Now(),
		}
		inserted, err := tx.InsertSource(ctx, src)
		if err != nil {
			return command.Outcome{}, err
		}
		if !inserted {
			return command.Outcome{}, conflict("name_taken", "name", fmt.Sprintf("the account already has a source named %q", p.Name))
		}
		detail := map[string]any{"name": src.Name, "kind": src.Kind, "schedule": src.Schedule, "time_zone": src.TimeZone}
		if config != nil {
			detail["config"] = cfg.Redacted()
		}
		if err := audit(ctx, tx, e, src.ID, "", AuditSourceCreated, own, nil, detail); err != nil {
			return command.Outcome{}, err
		}
		stored, err := tx.GetSource(ctx, src.ID)
		if err != nil {
			return command.Outcome{}, err
		}
		view, err := NewSourceView(stored, acc)
		if err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusCreated, Result: view}, nil
	}, nil
}

// ownSource returns the source if it exists and belongs to the command's
// account; anything else is 404, the same answer for both.
func ownSource(src *store.BackupSource, err error, e *command.Envelope, id string) (*store.BackupSource, error) {
	if errors.Is(err, store.ErrNotFound) || (err == nil && src.AccountID != e.AccountID) {
		return nil, notFound("id", "no source "+id)
	}
	return src, err
}

func (w *Worker) recordSnapshot(ctx context.Context, e *command.Envelope, p RecordSnapshotParams) (command.Effect, error) {
	if w.Blobs == nil {
		return nil, blobsMissing()
	}
	taken, err := p.Time()
	if err != nil {
		return nil, err
	}
	if taken.After(e.CreatedAt.Add(FutureSkew)) {
		return nil, invalid("taken_at", fmt.Sprintf("taken_at %s is more than %s in the future", p.TakenAt, FutureSkew))
	}
	src, err := w.Store.GetSource(ctx, p.SourceID)
	if src, err = ownSource(src, err, e, p.SourceID); err != nil {
		return nil, err
	}
	id := p.ID
	if id == "" {
		id = derivedID(SnapshotIDPrefix, "snapshot", e.ID)
	}
	var (
		size      int64
		sum, key  string
		data      []byte
		sizeField = "blob_key"
	)
	if p.ContentBase64 != "" {
		if data, err = p.Content(); err != nil {
			return nil, err
		}
		digest := sha256.Sum256(data)
		sum, size, sizeField = hex.EncodeToString(digest[:]), int64(len(data)), "content_base64"
		if err := p.checkClaims(size, sum); err != nil {
			return nil, err
		}
		// The key names the content: a second snapshot under the same id
		// can never overwrite the first one's bytes.
		key = fmt.Sprintf("%s/%s/%s-%s", src.AccountID, src.ID, id, sum[:16])
	} else {
		key = p.BlobKey
		if !strings.HasPrefix(key, src.AccountID+"/") {
			return nil, invalid("blob_key", fmt.Sprintf("blob_key must be under the account's own prefix %s/", src.AccountID))
		}
		info, err := w.Blobs.Stat(ctx, key)
		if errors.Is(err, blob.ErrNotFound) {
			return nil, invalid("blob_key", fmt.Sprintf("there is no blob %s in the blob store; upload it first", key))
		} else if err != nil {
			return nil, err
		}
		// blob.gc deletes blobs no snapshot holds once they are GCAge old:
		// a blob half that old could be deleted while this records it.
		if limit := w.settings().GCAge / 2; time.Since(info.ModTime) > limit {
			return nil, invalid("blob_key", fmt.Sprintf("the blob %s was stored %s ago, more than half of LEVQOR_BLOB_GC_AGE (%s): blob.gc may be deleting it; upload it again and record it within %s",
				key, time.Since(info.ModTime).Round(time.Minute), w.settings().GCAge, limit))
		}
		if size, sum, err = w.digest(ctx, key); errors.Is(err, blob.ErrNotFound) {
			return nil, invalid("blob_key", fmt.Sprintf("there is no blob %s in the blob store; upload it first", key))
		} else if err != nil {
			return nil, err
		}
		if err := p.checkClaims(size, sum); err != nil {
			return nil, err
		}
	}
	snap := store.Snapshot{
		ID: id, AccountID: src.AccountID, SourceID: src.ID, TakenAt: taken, SizeBytes: size, SHA256: sum,
		BlobKey: key, Tags: p.Tags, RecordedBy: e.KeyID, RecordedAt: time.Now(),
	}
	// What would refuse the record is checked before its content is
	// stored: a refused record leaves no blob behind. (The transaction
	// checks again; what a race leaves, blob.gc collects.)
	refused := func(ctx context.Context, tx *store.Tx) error {
		if err := refuseIfErasing(ctx, tx, src.AccountID); err != nil {
			return err
		}
		if _, err := tx.GetSnapshot(ctx, snap.ID); err == nil {
			return recordConflict(ctx, tx, snap)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if ex, err := tx.SnapshotByBlobKey(ctx, snap.BlobKey); err == nil {
			return conflict("blob_taken", "blob_key", fmt.Sprintf("blob %s already belongs to snapshot %s", snap.BlobKey, ex.ID))
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return w.quotaRoom(ctx, tx, src.AccountID, size, sizeField)
	}
	if err := w.Store.InTx(ctx, func(tx *store.Tx) error { return refused(ctx, tx) }); err != nil {
		return nil, err
	}
	if data != nil {
		if _, _, err := w.Blobs.Put(ctx, key, bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("storing the blob of %s: %w", id, err)
		}
	}
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		if _, err := tx.LockSource(ctx, src.ID); err != nil {
			return command.Outcome{}, err
		}
		if err := tx.LockAccountForSources(ctx, src.AccountID); err != nil {
			return command.Outcome{}, err
		}
		if err := refused(ctx, tx); err != nil {
			return command.Outcome{}, err
		}
		inserted, err := tx.InsertSnapshot(ctx, snap)
		if err != nil {
			return command.Outcome{}, err
		}
		if !inserted {
			return command.Outcome{}, recordConflict(ctx, tx, snap)
		}
		if err := audit(ctx, tx, e, src.ID, snap.ID, AuditSnapshotRecorded, nil, nil, map[string]any{
			"taken_at": snap.TakenAt, "size_bytes": snap.SizeBytes, "sha256": snap.SHA256, "blob_key": snap.BlobKey, "tags": snap.Tags,
		}); err != nil {
			return command.Outcome{}, err
		}
		stored, err := tx.GetSnapshot(ctx, snap.ID)
		if err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusCreated, Result: stored}, nil
	}, nil
}

// quotaRoom refuses, with 422 quota_exceeded naming field, n more bytes
// the account's storage quota has no room for (as a run is refused).
func (w *Worker) quotaRoom(ctx context.Context, tx *store.Tx, accountID string, n int64, field string) error {
	acc, err := tx.GetAccount(ctx, accountID)
	if err != nil {
		return err
	}
	ent, err := Entitlements(acc.Entitlements)
	if err != nil {
		return err
	}
	quota := int64(ent.StorageGB) * GB
	used, err := tx.AccountStoredBytes(ctx, accountID)
	if err != nil {
		return err
	}
	if used+n > quota {
		return unprocessable("quota_exceeded", field, fmt.Sprintf("storage quota exceeded: the account stores %s of its %s (%s tier); this snapshot's %s do not fit, and nothing was stored",
			humanBytes(used), humanBytes(quota), tierOr(ent.Tier), humanBytes(n)))
	}
	return nil
}

// recordConflict explains why a snapshot was not inserted.
func recordConflict(ctx context.Context, tx *store.Tx, s store.Snapshot) error {
	if ex, err := tx.GetSnapshot(ctx, s.ID); err == nil {
		if ex.SourceID == s.SourceID && ex.SHA256 == s.SHA256 && ex.TakenAt.Equal(s.TakenAt) && ex.BlobKey == s.BlobKey {
			return conflict("already_recorded", "id", fmt.Sprintf("snapshot %s is already recorded with these contents", s.ID))
		}
		return conflict("id_taken", "id", fmt.Sprintf("snapshot id %s is already used", s.ID))
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if ex, err := tx.SnapshotByBlobKey(ctx, s.BlobKey); err == nil {
		return conflict("blob_taken", "blob_key", fmt.Sprintf("blob %s already belongs to snapshot %s", s.BlobKey, ex.ID))
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return fmt.Errorf("snapshot %s was not inserted and nothing conflicts; retrying", s.ID)
}

// checkClaims compares what the agent says the blob is with what it is.
func (p *SnapshotBody) checkClaims(size int64, sum string) error {
	if p.SizeBytes != nil && *p.SizeBytes != size {
		return invalid("size_bytes", fmt.Sprintf("size_bytes %d does not match the blob, which has %d bytes", *p.SizeBytes, size))
	}
	if p.SHA256 != "" && p.SHA256 != sum {
		return invalid("sha256", fmt.Sprintf("sha256 does not match the blob, whose SHA-256 is %s", sum))
	}
	return nil
}

// digest reads a blob and returns its size and SHA-256.
func (w *Worker) digest(ctx context.Context, key string) (int64, string, error) {
	rc, err := w.Blobs.Get(ctx, key)
	if err != nil {
		return 0, "", err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return 0, "", fmt.Errorf("reading blob %s: %w", key, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func (w *Worker) setPolicy(_ context.Context, e *command.Envelope, p SetPolicyParams) (command.Effect, error) {
	var own *retention.Policy
	if !isNull(p.Policy) {
		pol, err := ParsePolicy(p.Policy)
		if err != nil {
			return nil, err
		}
		own = &pol
	}
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		src, err := tx.LockSource(ctx, p.SourceID)
		if src, err = ownSource(src, err, e, p.SourceID); err != nil {
			return command.Outcome{}, err
		}
		acc, err := tx.GetAccount(ctx, src.AccountID)
		if err != nil {
			return command.Outcome{}, err
		}
		ent, err := Entitlements(acc.Entitlements)
		if err != nil {
			return command.Outcome{}, err
		}
		var raw json.RawMessage
		if own != nil {
			if fe := CheckWithin(*own, ent.Retention, ent.Tier); fe != nil {
				return command.Outcome{}, invalid(policyField(fe.Field), fe.Message)
			}
			if raw, err = json.Marshal(own); err != nil {
				return command.Outcome{}, err
			}
		}
		previous := src.Policy
		if err := tx.SetSourcePolicy(ctx, store.SetSourcePolicyParams{ID: src.ID, Policy: raw}); err != nil {
			return command.Outcome{}, err
		}
		src.Policy = raw
		view, err := NewSourceView(src, acc)
		if err != nil {
			return command.Outcome{}, err
		}
		reason := "the source follows its own policy"
		if own == nil {
			reason = "the source follows its tier's default policy"
		}
		if err := audit(ctx, tx, e, src.ID, "", AuditPolicySet, &view.EffectivePolicy, []string{reason}, map[string]any{
			"previous": rawOrNull(previous), "policy": rawOrNull(raw), "policy_origin": view.PolicyOrigin,
		}); err != nil {
			return command.Outcome{}, err
		}
		stored, err := tx.GetSource(ctx, src.ID)
		if err != nil {
			return command.Outcome{}, err
		}
		view.BackupSource = *stored
		return command.Outcome{Status: http.StatusOK, Result: view}, nil
	}, nil
}

func rawOrNull(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage("null")
	}
	return raw
}

// holdTarget finds what a hold names and checks that the command's account
// owns it; the source is locked.
func holdTarget(ctx context.Context, tx *store.Tx, e *command.Envelope, p HoldParams) (*store.BackupSource, *store.Snapshot, error) {
	if p.Target == TargetSource {
		src, err := tx.LockSource(ctx, p.ID)
		src, err = ownSource(src, err, e, p.ID)
		return src, nil, err
	}
	snap, err := tx.GetSnapshot(ctx, p.ID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && snap.AccountID != e.AccountID) {
		return nil, nil, notFound("id", "no snapshot "+p.ID)
	}
	if err != nil {
		return nil, nil, err
	}
	src, err := tx.LockSource(ctx, snap.SourceID)
	if err != nil {
		return nil, nil, err
	}
	// Read again under the lock: a sweep may have moved it meanwhile.
	snap, err = tx.GetSnapshot(ctx, p.ID)
	return src, snap, err
}

func (w *Worker) placeHold(_ context.Context, e *command.Envelope, pp PlaceHoldParams) (command.Effect, error) {
	p := pp.HoldParams
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		src, snap, err := holdTarget(ctx, tx, e, p)
		if err != nil {
			return command.Outcome{}, err
		}
		if err := refuseIfErasing(ctx, tx, src.AccountID); err != nil {
			return command.Outcome{}, err
		}
		h := store.LegalHold{
			ID: derivedID(HoldIDPrefix, "hold", e.ID), AccountID: src.AccountID, SourceID: src.ID,
			Reason: p.Reason, PlacedBy: e.KeyID, PlacedByOperator: p.ByOperator, PlacedAt: time.Now(),
		}
		if snap != nil {
			if snap.State == store.SnapshotPurging || snap.State == store.SnapshotPurged {
				return command.Outcome{}, conflict("snapshot_purged", "id", fmt.Sprintf("snapshot %s is %s: its blob is deleted, there is nothing left to hold", snap.ID, snap.State))
			}
			h.SnapshotID = snap.ID
		}
		inserted, err := tx.InsertHold(ctx, h)
		if err != nil {
			return command.Outcome{}, err
		}
		if !inserted {
			ex, err := tx.ActiveHold(ctx, h.Target())
			if err != nil {
				return command.Outcome{}, err
			}
			return command.Outcome{}, conflict("already_held", "id", fmt.Sprintf("%s %s is already held by %s (%s)", p.Target, p.ID, ex.ID, ex.Reason))
		}
		if err := audit(ctx, tx, e, src.ID, h.SnapshotID, AuditHoldPlaced, nil, []string{p.Reason},
			map[string]any{"hold_id": h.ID, "target": p.Target, "by_operator": p.ByOperator}); err != nil {
			return command.Outcome{}, err
		}
		stored, err := tx.GetHold(ctx, h.ID)
		if err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusCreated, Result: stored}, nil
	}, nil
}

func (w *Worker) releaseHold(_ context.Context, e *command.Envelope, pp ReleaseHoldParams) (command.Effect, error) {
	p := pp.HoldParams
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		src, _, err := holdTarget(ctx, tx, e, p)
		if err != nil {
			return command.Outcome{}, err
		}
		h, err := tx.ActiveHold(ctx, p.ID)
		if errors.Is(err, store.ErrNotFound) {
			return command.Outcome{}, notFound("id", fmt.Sprintf("%s %s has no active hold", p.Target, p.ID))
		}
		if err != nil {
			return command.Outcome{}, err
		}
		if h.PlacedByOperator && !p.ByOperator {
			return command.Outcome{}, command.Fail(http.StatusForbidden, "forbidden", "id", fmt.Sprintf("hold %s was placed by an operator; only an operator can release it", h.ID))
		}
		if _, err := tx.ReleaseHold(ctx, store.ReleaseHoldParams{ID: h.ID, By: e.KeyID, Reason: p.Reason}); err != nil {
			return command.Outcome{}, err
		}
		reasons := []string{}
		if p.Reason != "" {
			reasons = append(reasons, p.Reason)
		}
		if err := audit(ctx, tx, e, src.ID, h.SnapshotID, AuditHoldReleased, nil, reasons,
			map[string]any{"hold_id": h.ID, "target": p.Target, "held_for": h.Reason, "by_operator": p.ByOperator}); err != nil {
			return command.Outcome{}, err
		}
		released, err := tx.GetHold(ctx, h.ID)
		if err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusOK, Result: released}, nil
	}, nil
}

func (w *Worker) sweepCommand(ctx context.Context, e *command.Envelope, p SweepParams) (command.Effect, error) {
	src, err := w.Store.GetSource(ctx, p.SourceID)
	if _, err := ownSource(src, err, e, p.SourceID); err != nil {
		return nil, err
	}
	if !p.DryRun && w.Blobs == nil {
		return nil, blobsMissing()
	}
	o := SweepOptions{Now: e.CreatedAt, Actor: actorOf(e), DryRun: p.DryRun, CommandID: e.ID}
	if p.MaxShare != nil {
		o.MaxShare = *p.MaxShare
	}
	// The sweep commits its own steps (each idempotent), outside the
	// command's transaction: a retry after a crash finishes them.
	res, err := w.SweepSource(ctx, p.SourceID, o)
	if err != nil {
		return nil, err
	}
	return func(context.Context, *store.Tx) (command.Outcome, error) {
		return command.Outcome{Status: http.StatusOK, Result: res}, nil
	}, nil
}

func (w *Worker) restore(_ context.Context, e *command.Envelope, p RestoreParams) (command.Effect, error) {
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		src, snap, err := holdTarget(ctx, tx, e, HoldParams{Target: TargetSnapshot, ID: p.SnapshotID})
		if err != nil {
			return command.Outcome{}, err
		}
		moved, err := tx.MoveSnapshot(ctx, store.MoveSnapshotParams{ID: snap.ID, From: store.SnapshotTrash, To: store.SnapshotActive})
		if err != nil {
			return command.Outcome{}, err
		}
		if !moved {
			return command.Outcome{}, conflict("not_in_trash", "id", fmt.Sprintf("snapshot %s is %s, not in the trash", snap.ID, snap.State))
		}
		if err := audit(ctx, tx, e, src.ID, snap.ID, AuditSnapshotRestored, nil, []string{p.Reason},
			map[string]any{"trashed_at": snap.TrashedAt, "purge_after": snap.PurgeAfter}); err != nil {
			return command.Outcome{}, err
		}
		hold, err := tx.ActiveHold(ctx, snap.ID)
		if errors.Is(err, store.ErrNotFound) {
			h := store.LegalHold{
				ID: derivedID(HoldIDPrefix, "hold", e.ID), AccountID: src.AccountID, SourceID: src.ID, SnapshotID: snap.ID,
				Reason: "restored from the trash: " + p.Reason, PlacedBy: e.KeyID, PlacedByOperator: true, PlacedAt: time.Now(),
			}
			if _, err := tx.InsertHold(ctx, h); err != nil {
				return command.Outcome{}, err
			}
			if err := audit(ctx, tx, e, src.ID, snap.ID, AuditHoldPlaced, nil, []string{h.Reason},
				map[string]any{"hold_id": h.ID, "target": TargetSnapshot, "by_operator": true}); err != nil {
				return command.Outcome{}, err
			}
			hold, err = tx.GetHold(ctx, h.ID)
		}
		if err != nil {
			return command.Outcome{}, err
		}
		restored, err := tx.GetSnapshot(ctx, snap.ID)
		if err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusOK, Result: RestoreResult{Snapshot: *restored, Hold: *hold}}, nil
	}, nil
}

// refuseIfErasing refuses to record or hold anything for an account
// whose data is being (or was) erased: the erasure would miss it. The
// caller holds the source's lock, which the erasure takes before it
// begins, so the two cannot cross.
func refuseIfErasing(ctx context.Context, tx *store.Tx, accountID string) error {
	erasing, err := tx.AccountErasing(ctx, accountID)
	if err != nil {
		return err
	}
	if erasing {
		return conflict("account_erasing", "", "the account's data is being erased: nothing new is recorded or held for it")
	}
	return nil
}
