package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/repo"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// Actions of the accounts domain about erasure.
const (
	ActionRequestErasure = "request_erasure"
	ActionCancelErasure  = "cancel_erasure"
)

// JobOffboard erases the data of accounts whose erasure is due, and
// JobErasureReminder tells owners a day ahead, as the scheduler's catalog
// names them.
const (
	JobOffboard        = scheduler.JobAccountsOffboard
	JobErasureReminder = scheduler.JobAccountsErasureReminder
)

// ErasureRemindBeforeDefault is LEVQOR_ERASURE_REMIND_BEFORE: how long
// before a requested erasure its owner is told it is coming.
const ErasureRemindBeforeDefault = 24 * time.Hour

// ConsumerTicks reads the accounts.* jobs' ticks.
const ConsumerTicks = "accounts-tick"

// ErasureIDPrefix starts every erasure's id.
const ErasureIDPrefix = "era_"

// Defaults of the erasure settings.
const (
	// ErasureCoolingOffDefault is LEVQOR_ERASURE_COOLING_OFF: how long a
	// requested erasure waits, cancellable, before it is carried out.
	ErasureCoolingOffDefault = 7 * 24 * time.Hour
	// OffboardGraceDefault is LEVQOR_OFFBOARD_GRACE: how long after a
	// cancellation offboarding erases the account's data.
	OffboardGraceDefault = 30 * 24 * time.Hour
)

// TickConsumer declares accounts-tick: the accounts.* jobs' ticks.
func TickConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerTicks, Kind: bus.Ticks, Filter: Domain + ".>"}
}

// RequestErasureParams are the parameters of accounts.request_erasure.
type RequestErasureParams struct {
	// Confirm must be the account's name, exactly: the confirmation that
	// the caller means this account.
	Confirm string `json:"confirm"`
	// Immediately skips the cooling-off: for operators carrying out a
	// customer's written request, never for an account's own key.
	Immediately bool `json:"immediately,omitempty"`
	// ByOperator is set by the API for an operator's key.
	ByOperator bool `json:"by_operator,omitempty"`
}

// Validate requires the confirmation.
func (p *RequestErasureParams) Validate() error {
	if strings.TrimSpace(p.Confirm) == "" {
		return command.Fail(http.StatusUnprocessableEntity, "invalid_field", "confirm",
			"confirm is required: the account's name, exactly, to confirm its data is to be erased")
	}
	if p.Immediately && !p.ByOperator {
		return command.Fail(http.StatusForbidden, "forbidden", "immediately",
			"only operators skip the cooling-off; the account's own request waits for it, and can be canceled meanwhile")
	}
	return nil
}

// CancelErasureParams are the parameters of accounts.cancel_erasure.
type CancelErasureParams struct {
	// ByOperator is set by the API for an operator's key.
	ByOperator bool `json:"by_operator,omitempty"`
}

func (w *Worker) coolingOff() time.Duration {
	if w.ErasureCoolingOff > 0 {
		return w.ErasureCoolingOff
	}
	return ErasureCoolingOffDefault
}

func (w *Worker) offboardGrace() time.Duration {
	if w.OffboardGrace > 0 {
		return w.OffboardGrace
	}
	return OffboardGraceDefault
}

// holdsError refuses an erasure of an account under legal hold, naming
// the holds.
func holdsError(holds []store.LegalHold) error {
	names := make([]string, len(holds))
	for i, h := range holds {
		names[i] = fmt.Sprintf("%s (%s)", h.ID, h.Reason)
	}
	return command.Fail(http.StatusConflict, "legal_hold", "",
		"the account's backups are under legal hold: "+strings.Join(names, ", ")+"; nothing is erased until every hold is released")
}

// requestErasure schedules the erasure of the command's account a
// cooling-off period from when the API accepted it. Refused: a
// confirmation that is not the account's name, an account under legal
// hold, an account erased already. An erasure already scheduled is
// answered as it is.
func (w *Worker) requestErasure(_ context.Context, e *command.Envelope, p RequestErasureParams) (command.Effect, error) {
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		acc, err := tx.GetAccount(ctx, e.AccountID)
		if errors.Is(err, store.ErrNotFound) {
			return command.Outcome{}, command.Fail(http.StatusNotFound, "not_found", "id", "no account "+e.AccountID)
		}
		if err != nil {
			return command.Outcome{}, err
		}
		if p.Confirm != acc.Name {
			return command.Outcome{}, command.Fail(http.StatusUnprocessableEntity, "invalid_field", "confirm",
				"confirm must be the account's name exactly, "+fmt.Sprintf("%q", acc.Name))
		}
		if last, err := tx.LatestErasure(ctx, acc.ID); err == nil && last.Status == store.ErasureDone {
			return command.Outcome{}, command.Fail(http.StatusConflict, "already_erased", "", "the account's data was erased at "+last.CompletedAt.Format(time.RFC3339))
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return command.Outcome{}, err
		}
		holds, err := tx.AccountHolds(ctx, acc.ID)
		if err != nil {
			return command.Outcome{}, err
		}
		if len(holds) > 0 {
			return command.Outcome{}, holdsError(holds)
		}
		at := e.CreatedAt.UTC()
		if at.IsZero() {
			at = w.clock().UTC()
		}
		by := e.Actor()
		due := at.Add(w.coolingOff())
		if p.Immediately {
			// Due at the next accounts.offboard, even one triggered by hand
			// within the same second (a manual tick's slot is whole seconds).
			due = at.Truncate(time.Second)
		}
		if _, err := tx.InsertErasure(ctx, store.Erasure{
			ID: command.IDFor(ErasureIDPrefix, "erasure", e.ID), AccountID: acc.ID, Origin: store.ErasureRequested,
			RequestedBy: by, RequestedAt: at, ScheduledFor: due,
		}); err != nil {
			return command.Outcome{}, err
		}
		if p.Immediately {
			// An erasure scheduled already is brought forward.
			if err := tx.BringErasureForward(ctx, acc.ID, due); err != nil {
				return command.Outcome{}, err
			}
		}
		cur, err := tx.LatestErasure(ctx, acc.ID)
		if err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusAccepted, Result: cur}, nil
	}, nil
}

// cancelErasure cancels the account's scheduled (or blocked) erasure.
func (w *Worker) cancelErasure(_ context.Context, e *command.Envelope, p CancelErasureParams) (command.Effect, error) {
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		cur, err := tx.LatestErasure(ctx, e.AccountID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && cur.Status != store.ErasureScheduled && cur.Status != store.ErasureBlocked) {
			return command.Outcome{}, command.Fail(http.StatusConflict, "no_erasure_scheduled", "", "no erasure of the account is scheduled")
		}
		if err != nil {
			return command.Outcome{}, err
		}
		if cur.Origin != store.ErasureRequested && !p.ByOperator {
			return command.Outcome{}, command.Fail(http.StatusForbidden, "forbidden", "",
				"this erasure is the account's offboarding after its cancellation; only operators cancel it")
		}
		if _, err := tx.SetErasure(ctx, cur.ID, store.ErasureCanceled, "canceled by key:"+e.KeyID, nil, w.clock(),
			store.ErasureScheduled, store.ErasureBlocked); err != nil {
			return command.Outcome{}, err
		}
		cur, err = tx.LatestErasure(ctx, e.AccountID)
		if err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusOK, Result: cur}, nil
	}, nil
}

// HandleTick runs the accounts.* jobs.
func (w *Worker) HandleTick(ctx context.Context, m *bus.Message) error {
	return scheduler.Dispatch(ConsumerTicks, scheduler.Jobs{
		JobOffboard: func(ctx context.Context, _ *bus.Message, t scheduler.Tick) error {
			_, err := w.Offboard(ctx, t.Slot)
			return err
		},
		JobErasureReminder: func(ctx context.Context, _ *bus.Message, t scheduler.Tick) error {
			_, err := w.RemindErasures(ctx, t.Slot)
			return err
		},
	})(ctx, m)
}

// OffboardResult counts what one accounts.offboard tick did.
type OffboardResult struct {
	// Scheduled erasures of accounts canceled longer than the grace.
	Scheduled int
	// Erased accounts, and Blocked ones (under legal hold).
	Erased, Blocked int
}

// Offboard, at slot, schedules the erasure of every account canceled
// longer than OffboardGrace ago (due at once: the grace was its cooling
// off), then carries out every erasure due: a blocked one is tried again
// each time, until its holds are released. An account that fails does
// not stop the others; the errors are returned together so the tick is
// retried, and what was done is not done again.
func (w *Worker) Offboard(ctx context.Context, slot time.Time) (OffboardResult, error) {
	var res OffboardResult
	slot = slot.UTC().Truncate(time.Microsecond)
	canceled, err := w.Store.CanceledAccounts(ctx, slot.Add(-w.offboardGrace()))
	if err != nil {
		return res, err
	}
	for _, id := range canceled {
		err := w.Store.InTx(ctx, func(tx *store.Tx) error {
			ok, err := tx.InsertErasure(ctx, store.Erasure{
				ID: command.IDFor(ErasureIDPrefix, "offboarding", id+"@"+slot.Format(time.RFC3339)), AccountID: id,
				Origin: store.ErasureOffboarding, RequestedBy: "offboarding", RequestedAt: slot, ScheduledFor: slot,
			})
			if ok {
				res.Scheduled++
			}
			return err
		})
		if err != nil {
			return res, err
		}
	}
	due, err := w.Store.DueErasures(ctx, slot)
	if err != nil {
		return res, err
	}
	var errs []error
	for _, er := range due {
		erased, err := w.erase(ctx, er, slot)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("erasing account %s: %w", er.AccountID, err))
		case erased:
			res.Erased++
		default:
			res.Blocked++
		}
	}
	return res, errors.Join(errs...)
}

// erase carries out one erasure in two steps. First, in one
// transaction holding the account's source locks (which hold placement
// and snapshot recording take too): an offboarding erasure of an account
// that is no longer canceled is canceled; one of an account an operator
// suspended, or under legal hold, is marked blocked, naming why; otherwise the snapshots move to purging and
// the erasure to erasing, after which nothing new is recorded or held for
// the account. Then the blobs are deleted and, in a second transaction,
// the account's data and the report. An erasure interrupted after the
// first step resumes at the second. It reports whether the account was
// erased.
func (w *Worker) erase(ctx context.Context, er store.Erasure, at time.Time) (bool, error) {
	log := bus.Logger(ctx).WithFields(logrus.Fields{"account_id": er.AccountID, "erasure_id": er.ID, "origin": er.Origin})
	if er.Status != store.ErasureErasing {
		var stop string
		err := w.Store.InTx(ctx, func(tx *store.Tx) error {
			stop = ""
			acc, err := tx.GetAccount(ctx, er.AccountID)
			if err != nil {
				return err
			}
			if er.Origin == store.ErasureOffboarding && acc.Status != store.AccountStatusCanceled {
				stop = "the account is " + acc.Status + " again"
				_, err := tx.SetErasure(ctx, er.ID, store.ErasureCanceled, stop, nil, at, store.ErasureScheduled, store.ErasureBlocked)
				return err
			}
			if s := acc.Suspension; s != nil {
				stop = "the account is suspended by an operator (" + s.Reason + "): its erasure waits until it is reinstated"
				_, err := tx.SetErasure(ctx, er.ID, store.ErasureBlocked, stop, nil, at, store.ErasureScheduled, store.ErasureBlocked)
				return err
			}
			sources, err := tx.SourcesOfAccount(ctx, er.AccountID)
			if err != nil {
				return err
			}
			for _, src := range sources {
				if _, err := tx.LockSource(ctx, src.ID); err != nil {
					return err
				}
			}
			// A catalog restored from a self-backup does not know the
			// blobs stored since: erasing from it would leave them. It
			// waits for the reconcile, and is tried again.
			restored, err := tx.PendingSelfRestore(ctx)
			if err != nil {
				return err
			}
			if restored != nil {
				stop = "Levqor's catalog was restored from a self-backup (" + restored.BackupKey + ") and is not yet reconciled " +
					"with the blob store, which may hold backups it does not know; the erasure waits for `levqor selfrestore reconcile`"
				_, err := tx.SetErasure(ctx, er.ID, store.ErasureBlocked, stop, nil, at, store.ErasureScheduled, store.ErasureBlocked)
				return err
			}
			holds, err := tx.AccountHolds(ctx, er.AccountID)
			if err != nil {
				return err
			}
			if len(holds) > 0 {
				var ce *command.Error
				_ = errors.As(holdsError(holds), &ce)
				stop = ce.Message
				_, err := tx.SetErasure(ctx, er.ID, store.ErasureBlocked, stop, nil, at, store.ErasureScheduled, store.ErasureBlocked)
				return err
			}
			return tx.BeginErasure(ctx, er.ID, er.AccountID, at)
		})
		if err != nil {
			return false, err
		}
		if stop != "" {
			log.WithField("reason", stop).Warn("erasure not carried out")
			return false, nil
		}
	}
	if w.Blobs == nil {
		return false, errors.New("erasing an account needs the blob store (LEVQOR_BLOB_DIR or LEVQOR_BLOB_S3_*)")
	}
	snaps, err := w.Store.BlobsOfAccount(ctx, er.AccountID)
	if err != nil {
		return false, err
	}
	var rep store.ErasureReport
	for _, s := range snaps {
		if repo.IsRepoKey(s.BlobKey) {
			continue // with the repository, below
		}
		if err := w.Blobs.Delete(ctx, s.BlobKey); err != nil && !errors.Is(err, blob.ErrNotFound) {
			return false, fmt.Errorf("deleting blob %s: %w", s.BlobKey, err)
		}
		rep.Blobs++
		rep.BlobBytes += s.SizeBytes
	}
	// The account's repository: packs, indexes and manifests its
	// snapshots shared. Its data key goes with the rows below, so a copy
	// of them anywhere stays unreadable.
	objs, err := w.Blobs.List(ctx, repo.AccountPrefix(er.AccountID))
	if err != nil {
		return false, err
	}
	for _, o := range objs {
		if err := w.Blobs.Delete(ctx, o.Key); errors.Is(err, blob.ErrLocked) {
			// Locked (LEVQOR_BLOB_LOCK_DAYS) until a later date: its key
			// goes below, so nobody reads it; blob.gc deletes it then.
			rep.LockedBlobs++
			continue
		} else if err != nil && !errors.Is(err, blob.ErrNotFound) {
			return false, fmt.Errorf("deleting blob %s: %w", o.Key, err)
		}
		rep.Blobs++
		rep.BlobBytes += o.Size
	}
	err = w.Store.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.EraseAccountData(ctx, er.AccountID, at, &rep); err != nil {
			return err
		}
		_, err := tx.SetErasure(ctx, er.ID, store.ErasureDone, "", &rep, at, store.ErasureErasing)
		return err
	})
	if err != nil {
		return false, err
	}
	detail, _ := json.Marshal(rep)
	log.WithField("report", string(detail)).Warn("account data erased")
	return true, nil
}

// RemindErasures raises accounts.erasure_due, at slot, for every requested
// erasure still scheduled within ErasureRemindBefore, once each (recorded
// in the same transaction): the owner is told while they can still
// cancel. It returns how many it raised.
func (w *Worker) RemindErasures(ctx context.Context, slot time.Time) (int, error) {
	before := w.ErasureRemindBefore
	if before <= 0 {
		before = ErasureRemindBeforeDefault
	}
	slot = slot.UTC().Truncate(time.Microsecond)
	due, err := w.Store.ErasuresToRemind(ctx, slot, slot.Add(before))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, er := range due {
		err := w.Store.InTx(ctx, func(tx *store.Tx) error {
			ok, err := tx.MarkErasureReminded(ctx, er.ID, slot)
			if err != nil || !ok {
				return err
			}
			n++
			_, err = events.Emit(ctx, tx, w.Topology.WithDefaults(), events.ErasureDue{AccountID: er.AccountID, ErasureID: er.ID,
				ScheduledFor: er.ScheduledFor, Incident: "erasure_due:" + er.ID, At: slot}, "erasure-"+er.ID)
			return err
		})
		if err != nil {
			return n, err
		}
		bus.Logger(ctx).WithFields(logrus.Fields{"account_id": er.AccountID, "erasure_id": er.ID}).Info("erasure reminder raised")
	}
	return n, nil
}
