package backups

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/store"
)

// DefaultSchedule is the schedule a runnable source gets from its tier
// when it is created without one: higher tiers back up more often.
func DefaultSchedule(tier string) string {
	switch tier {
	case "enterprise":
		return "0 * * * *" // hourly
	case "business":
		return "0 */6 * * *" // every six hours
	default:
		return "0 2 * * *" // daily at 02:00
	}
}

// pauseSource carries out backup.pause_source and backup.resume_source.
// A paused source gets no scheduled runs and raises no overdue alerts;
// manual runs still work.
func (w *Worker) pauseSource(_ context.Context, e *command.Envelope, p SourceParams) (command.Effect, error) {
	pause := e.Action == ActionPause
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		src, err := tx.LockSource(ctx, p.SourceID)
		if src, err = ownSource(src, err, e, p.SourceID); err != nil {
			return command.Outcome{}, err
		}
		if !Runs(src) {
			return command.Outcome{}, unprocessable("not_runnable", "id", fmt.Sprintf("source %s is a record-only %s source: it has no scheduled runs to pause", src.ID, src.Kind))
		}
		if pause == (src.PausedAt != nil) {
			state := "running on schedule"
			if pause {
				state = "paused"
			}
			return command.Outcome{}, conflict("already_"+map[bool]string{true: "paused", false: "resumed"}[pause], "id",
				fmt.Sprintf("source %s is already %s", src.ID, state))
		}
		var since *time.Time
		action := AuditResumed
		if pause {
			now := time.Now()
			since, action = &now, AuditPaused
		}
		if err := tx.SetSourcePaused(ctx, src.ID, since, time.Now()); err != nil {
			return command.Outcome{}, err
		}
		if err := audit(ctx, tx, e, src.ID, "", action, nil, nil, nil); err != nil {
			return command.Outcome{}, err
		}
		return sourceOutcome(ctx, tx, src.ID)
	}, nil
}

// setConfig carries out backup.set_config (operators).
func (w *Worker) setConfig(ctx context.Context, e *command.Envelope, p SetConfigParams) (command.Effect, error) {
	src, err := w.Store.GetSource(ctx, p.SourceID)
	if src, err = ownSource(src, err, e, p.SourceID); err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(src.Kind, p.Config, w.settings().AllowedPaths, w.settings().ProtectedPaths...)
	if err != nil {
		return nil, err
	}
	if !Runnable(src.Kind) {
		return nil, unprocessable("not_runnable", "id", fmt.Sprintf("source %s is a record-only %s source and takes no config", src.ID, src.Kind))
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		if _, err := tx.LockSource(ctx, src.ID); err != nil {
			return command.Outcome{}, err
		}
		if err := tx.SetSourceConfig(ctx, src.ID, raw, time.Now()); err != nil {
			return command.Outcome{}, err
		}
		if err := audit(ctx, tx, e, src.ID, "", AuditConfigSet, nil, nil, map[string]any{"config": cfg.Redacted()}); err != nil {
			return command.Outcome{}, err
		}
		return sourceOutcome(ctx, tx, src.ID)
	}, nil
}

func sourceOutcome(ctx context.Context, tx *store.Tx, id string) (command.Outcome, error) {
	stored, err := tx.GetSource(ctx, id)
	if err != nil {
		return command.Outcome{}, err
	}
	acc, err := tx.GetAccount(ctx, stored.AccountID)
	if err != nil {
		return command.Outcome{}, err
	}
	view, err := NewSourceView(stored, acc)
	if err != nil {
		return command.Outcome{}, err
	}
	return command.Outcome{Status: http.StatusOK, Result: view}, nil
}
