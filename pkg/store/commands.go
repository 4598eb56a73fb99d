package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Command statuses, in the order a command goes through them.
const (
	// CommandQueued: ingest recorded the command and published it (or is
	// about to).
	CommandQueued = "queued"
	// CommandRunning: a worker has started on it.
	CommandRunning = "running"
	// CommandSucceeded: the worker committed its effects; Result holds the
	// outcome.
	CommandSucceeded = "succeeded"
	// CommandFailed: the command will not take effect as it stands; Error
	// says why.
	CommandFailed = "failed"
)

// Error codes the pipeline itself records on failed commands, as opposed to
// those a worker's handler chooses. A command failed with one of them may
// still run: a retry with the same Idempotency-Key republishes a command
// whose publish failed, and an operator may replay a dead letter.
const (
	// CommandErrorPublishFailed: JetStream did not acknowledge the publish,
	// so no worker may ever see the command.
	CommandErrorPublishFailed = "publish_failed"
	// CommandErrorDeadLettered: the worker gave up and the message went to
	// the dead-letter queue, where operators see it.
	CommandErrorDeadLettered = "processing_failed"
)

// CommandError is why a command failed, in the API's error shape.
type CommandError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Command is the bookkeeping of one change request: not domain state, but
// what the request became. Ingest records it as queued before publishing;
// the worker that carries it out records the outcome in the transaction of
// its effects.
type Command struct {
	// ID is "cmd_" followed by random characters; it is also the message's
	// Nats-Msg-Id.
	ID string
	// Scope is who asked, for Idempotency-Key lookups: "operator" or
	// "account:<id>".
	Scope string
	// AccountID is the tenant the command concerns; "" when there is none
	// yet.
	AccountID string
	// Domain and Action name the subject: levqor.cmd.<domain>.<action>.
	Domain string
	Action string
	// IdempotencyKey is the client's Idempotency-Key; "" when it sent none.
	IdempotencyKey string
	// RequestHash identifies the request's content, so that a reused
	// Idempotency-Key with another body can be refused.
	RequestHash string
	// Payload is the message published to JetStream.
	Payload []byte
	// Status is one of CommandQueued, CommandRunning, CommandSucceeded,
	// CommandFailed.
	Status string
	// HTTPStatus is the status the outcome answers with (201, 422, …); 0
	// while the command is pending.
	HTTPStatus int
	// Result is the outcome of a succeeded command, as JSON.
	Result json.RawMessage
	// Error is why a failed command failed.
	Error *CommandError
	// CreatedAt and UpdatedAt are set by the store; zero means now.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Pending reports whether the command has no outcome yet.
func (c *Command) Pending() bool { return c.Status == CommandQueued || c.Status == CommandRunning }

type commandRow struct {
	ID             string         `db:"id"`
	Scope          string         `db:"scope"`
	AccountID      string         `db:"account_id"`
	Domain         string         `db:"domain"`
	Action         string         `db:"action"`
	IdempotencyKey sql.NullString `db:"idempotency_key"`
	RequestHash    string         `db:"request_hash"`
	Payload        []byte         `db:"payload"`
	Status         string         `db:"status"`
	HTTPStatus     sql.NullInt64  `db:"http_status"`
	Result         []byte         `db:"result"`
	Error          []byte         `db:"error"`
	CreatedAt      time.Time      `db:"created_at"`
	UpdatedAt      time.Time      `db:"updated_at"`
}

func (r commandRow) command() (*Command, error) {
	c := &Command{
		ID:             r.ID,
		Scope:          r.Scope,
		AccountID:      r.AccountID,
		Domain:         r.Domain,
		Action:         r.Action,
		IdempotencyKey: r.IdempotencyKey.String,
		RequestHash:    r.RequestHash,
		Payload:        nonNil(r.Payload),
		Status:         r.Status,
		HTTPStatus:     int(r.HTTPStatus.Int64),
		CreatedAt:      r.CreatedAt.UTC(),
		UpdatedAt:      r.UpdatedAt.UTC(),
	}
	if len(r.Result) > 0 {
		c.Result = json.RawMessage(r.Result)
	}
	if len(r.Error) > 0 {
		c.Error = &CommandError{}
		if err := json.Unmarshal(r.Error, c.Error); err != nil {
			return nil, fmt.Errorf("store: command %s: decoding error: %w", r.ID, err)
		}
	}
	return c, nil
}

const commandColumns = `id, scope, account_id, domain, action, idempotency_key, request_hash, payload,
status, http_status, result, error, created_at, updated_at`

const insertCommandSQL = `INSERT INTO commands
(id, scope, account_id, domain, action, idempotency_key, request_hash, payload, status, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING`

const commandByKeySQL = `SELECT ` + commandColumns + ` FROM commands
WHERE scope = ? AND idempotency_key = ?`

// CreateCommand records c as queued and returns it with created true. If c
// has an IdempotencyKey that its Scope has used before, nothing is written
// and the earlier command is returned with created false, whatever its
// content: the caller compares RequestHash.
func (s *Store) CreateCommand(ctx context.Context, c Command) (_ *Command, created bool, err error) {
	if c.ID == "" || c.Scope == "" || c.Domain == "" || c.Action == "" || c.RequestHash == "" {
		return nil, false, fmt.Errorf("store: creating command: id, scope, domain, action and request hash are required")
	}
	var key any
	if c.IdempotencyKey != "" {
		key = c.IdempotencyKey
	}
	now := ts(orNow(c.CreatedAt))
	var out *Command
	err = s.InTx(ctx, func(tx *Tx) error {
		res, err := tx.tx.ExecContext(ctx, tx.rebind(insertCommandSQL),
			c.ID, c.Scope, c.AccountID, c.Domain, c.Action, key, c.RequestHash, nonNil(c.Payload),
			CommandQueued, now, now)
		if err != nil {
			return fmt.Errorf("store: creating command %s: %w", c.ID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("store: creating command %s: %w", c.ID, err)
		}
		if n == 1 {
			created = true
			out = &c
			out.Status, out.CreatedAt, out.UpdatedAt = CommandQueued, now, now
			out.Payload = nonNil(c.Payload)
			out.HTTPStatus, out.Result, out.Error = 0, nil, nil
			return nil
		}
		if key == nil {
			return fmt.Errorf("store: creating command %s: id already taken", c.ID)
		}
		var r commandRow
		if err := tx.tx.GetContext(ctx, &r, tx.rebind(commandByKeySQL), c.Scope, c.IdempotencyKey); err != nil {
			return fmt.Errorf("store: reading command for idempotency key: %w", err)
		}
		out, err = r.command()
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return out, created, nil
}

// CommandByKey returns the command that scope made with Idempotency-Key
// key, or an error wrapping ErrNotFound.
func (s *Store) CommandByKey(ctx context.Context, scope, key string) (*Command, error) {
	var r commandRow
	err := s.db.GetContext(ctx, &r, s.rebind(commandByKeySQL), scope, key)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: no command of %s with that idempotency key: %w", scope, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading command for idempotency key: %w", err)
	}
	return r.command()
}

const getCommandSQL = `SELECT ` + commandColumns + ` FROM commands WHERE id = ?`

// GetCommand returns the command id, or an error wrapping ErrNotFound.
func (s *Store) GetCommand(ctx context.Context, id string) (*Command, error) {
	var r commandRow
	err := s.db.GetContext(ctx, &r, s.rebind(getCommandSQL), id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: command %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: getting command %s: %w", id, err)
	}
	return r.command()
}

// CommandOutcome is how a command ended.
type CommandOutcome struct {
	// ID is the command.
	ID string
	// Status is CommandSucceeded or CommandFailed.
	Status string
	// HTTPStatus is what the outcome answers with, e.g. 201 or 422.
	HTTPStatus int
	// Result is the outcome of a success, as JSON; nil on failure.
	Result json.RawMessage
	// Error is why it failed; nil on success.
	Error *CommandError
	// At is when it ended; zero means now.
	At time.Time
}

func (o CommandOutcome) columns() (result, errJSON, code any, err error) {
	switch o.Status {
	case CommandSucceeded:
		if o.Error != nil {
			return nil, nil, nil, fmt.Errorf("store: command %s succeeded with an error", o.ID)
		}
		if len(o.Result) > 0 {
			if !json.Valid(o.Result) {
				return nil, nil, nil, fmt.Errorf("store: command %s: result is not valid JSON", o.ID)
			}
			result = string(o.Result)
		}
	case CommandFailed:
		if o.Error == nil || o.Error.Code == "" {
			return nil, nil, nil, fmt.Errorf("store: command %s failed without an error code", o.ID)
		}
		b, err := json.Marshal(o.Error)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("store: command %s: encoding error: %w", o.ID, err)
		}
		errJSON, code = string(b), o.Error.Code
	default:
		return nil, nil, nil, fmt.Errorf("store: command %s: outcome status %q is neither succeeded nor failed", o.ID, o.Status)
	}
	if o.HTTPStatus < 100 || o.HTTPStatus > 599 {
		return nil, nil, nil, fmt.Errorf("store: command %s: http status %d out of range", o.ID, o.HTTPStatus)
	}
	return result, errJSON, code, nil
}

const completeCommandSQL = `UPDATE commands SET
	status = ?, http_status = ?, result = ?, error = ?, error_code = ?, updated_at = ?
WHERE id = ?`

// CompleteCommand records the outcome o within tx, the transaction of the
// worker's effects, whatever the command's state was. It is an error if the
// command does not exist.
func (tx *Tx) CompleteCommand(ctx context.Context, o CommandOutcome) error {
	result, errJSON, code, err := o.columns()
	if err != nil {
		return err
	}
	res, err := tx.tx.ExecContext(ctx, tx.rebind(completeCommandSQL),
		o.Status, o.HTTPStatus, result, errJSON, code, ts(orNow(o.At)), o.ID)
	if err != nil {
		return fmt.Errorf("store: completing command %s: %w", o.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: completing command %s: %w", o.ID, err)
	} else if n == 0 {
		return fmt.Errorf("store: command %s: %w", o.ID, ErrNotFound)
	}
	return nil
}

const failPendingCommandSQL = `UPDATE commands SET
	status = ?, http_status = ?, result = NULL, error = ?, error_code = ?, updated_at = ?
WHERE id = ? AND status IN ('queued', 'running')`

// FailPendingCommand records the failure o, but only if the command is
// still queued or running, and reports whether it did. The dead-letter
// path uses it when a worker gives up: it must never overwrite an outcome a
// worker has committed.
func (s *Store) FailPendingCommand(ctx context.Context, o CommandOutcome) (bool, error) {
	if o.Status != CommandFailed {
		return false, fmt.Errorf("store: failing command %s: status must be %s", o.ID, CommandFailed)
	}
	_, errJSON, code, err := o.columns()
	if err != nil {
		return false, err
	}
	res, err := s.db.ExecContext(ctx, s.rebind(failPendingCommandSQL),
		o.Status, o.HTTPStatus, errJSON, code, ts(orNow(o.At)), o.ID)
	if err != nil {
		return false, fmt.Errorf("store: failing command %s: %w", o.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: failing command %s: %w", o.ID, err)
	}
	return n == 1, nil
}

const failUnpublishedCommandSQL = `UPDATE commands SET
	status = 'failed', http_status = 503, result = NULL, error = ?, error_code = ?, updated_at = ?
WHERE id = ? AND status = 'queued'`

// FailUnpublishedCommand records that JetStream did not acknowledge the
// command's publish (503, CommandErrorPublishFailed), so that a client
// reading it knows to retry, and reports whether it did. Only a queued
// command is changed: if the publish reached JetStream after all and a
// worker has started, the worker's word wins.
func (s *Store) FailUnpublishedCommand(ctx context.Context, id string, at time.Time) (bool, error) {
	b, err := json.Marshal(CommandError{
		Code:    CommandErrorPublishFailed,
		Message: "the command could not be queued; retry with the same Idempotency-Key",
	})
	if err != nil {
		return false, fmt.Errorf("store: failing command %s: %w", id, err)
	}
	res, err := s.db.ExecContext(ctx, s.rebind(failUnpublishedCommandSQL), string(b), CommandErrorPublishFailed, ts(orNow(at)), id)
	if err != nil {
		return false, fmt.Errorf("store: failing command %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: failing command %s: %w", id, err)
	}
	return n == 1, nil
}

const requeueCommandSQL = `UPDATE commands SET
	status = 'queued', http_status = NULL, error = NULL, error_code = NULL, updated_at = ?
WHERE id = ? AND status = 'failed' AND error_code = ?`

// RequeueCommand puts a command whose publish failed back to queued, before
// it is published again, and reports whether it did. A command in any
// other state is left alone.
func (s *Store) RequeueCommand(ctx context.Context, id string, at time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(requeueCommandSQL), ts(orNow(at)), id, CommandErrorPublishFailed)
	if err != nil {
		return false, fmt.Errorf("store: requeueing command %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: requeueing command %s: %w", id, err)
	}
	return n == 1, nil
}

const markCommandRunningSQL = `UPDATE commands SET status = 'running', http_status = NULL, error = NULL, error_code = NULL, updated_at = ?
WHERE id = ? AND (status = 'queued' OR (status = 'failed' AND error_code IN (?, ?)))`

// MarkCommandRunning records that a worker has started on the command and
// reports whether the status changed. Only a queued command, or one failed
// by the pipeline (its publish timed out yet reached JetStream, or an
// operator replays its dead letter), becomes running: an outcome a worker
// committed is never undone.
func (s *Store) MarkCommandRunning(ctx context.Context, id string, at time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(markCommandRunningSQL), ts(orNow(at)), id,
		CommandErrorPublishFailed, CommandErrorDeadLettered)
	if err != nil {
		return false, fmt.Errorf("store: marking command %s running: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: marking command %s running: %w", id, err)
	}
	return n == 1, nil
}

const pruneCommandsSQL = `DELETE FROM commands WHERE status IN (?, ?) AND updated_at < ?`

// PruneCommands deletes commands that finished (succeeded or failed) before
// before and returns how many it deleted. Pending commands are never
// pruned. A pruned command's Idempotency-Key can be used again and its
// status URL answers 404, so before must lie further back than clients
// retry with a key and than any replay of the command's message (the
// inbox's retention).
func (s *Store) PruneCommands(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(pruneCommandsSQL), CommandSucceeded, CommandFailed, ts(before))
	if err != nil {
		return 0, fmt.Errorf("store: pruning commands: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: pruning commands: %w", err)
	}
	return n, nil
}
