package store

import (
	"context"
	"fmt"
	"regexp"
)

// Savepoints let one transaction carry the work of several messages and
// undo one message's part alone: a batch handler marks a savepoint before
// each message, rolls back to it when the message fails, and releases it
// when the message succeeds. PostgreSQL and SQLite share the syntax.

var savepointName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

func checkSavepoint(name string) error {
	if !savepointName.MatchString(name) {
		return fmt.Errorf("store: savepoint name %q: want a letter or underscore, then up to 62 letters, digits or underscores", name)
	}
	return nil
}

// Savepoint marks the current point of tx under name, so that RollbackTo
// can undo everything done after it without ending the transaction. The
// name is an SQL identifier (it cannot be a query parameter), so it is
// checked: letters, digits and underscores only.
func (tx *Tx) Savepoint(ctx context.Context, name string) error {
	if err := checkSavepoint(name); err != nil {
		return err
	}
	if _, err := tx.tx.ExecContext(ctx, "SAVEPOINT "+name); err != nil {
		return fmt.Errorf("store: savepoint %s: %w", name, err)
	}
	return nil
}

// RollbackTo undoes everything tx did since the savepoint name, which stays
// in place. On PostgreSQL it also clears the aborted state a failed
// statement leaves, so the transaction can carry on.
func (tx *Tx) RollbackTo(ctx context.Context, name string) error {
	if err := checkSavepoint(name); err != nil {
		return err
	}
	if _, err := tx.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+name); err != nil {
		return fmt.Errorf("store: rolling back to savepoint %s: %w", name, err)
	}
	return nil
}

// Release forgets the savepoint name, keeping what was done since it: the
// work becomes part of the enclosing transaction and commits or rolls back
// with it.
func (tx *Tx) Release(ctx context.Context, name string) error {
	if err := checkSavepoint(name); err != nil {
		return err
	}
	if _, err := tx.tx.ExecContext(ctx, "RELEASE SAVEPOINT "+name); err != nil {
		return fmt.Errorf("store: releasing savepoint %s: %w", name, err)
	}
	return nil
}
