package command

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/levqor/levqor/pkg/store"
)

// openWhileSuspended are the command domains, and the single commands,
// that an account an operator suspended may still send with its own
// credentials: paying (billing), talking to support, its notifications
// (opting out, rotating a webhook secret), and asking for its data's
// erasure or canceling that request (an erasure waits while the
// suspension holds). The names are the domains' own; a test in package
// api keeps them equal.
var openWhileSuspended = map[string]bool{
	"billing": true, "support": true, "notifications": true,
	"accounts.request_erasure": true, "accounts.cancel_erasure": true,
}

// OpenWhileSuspended reports whether an account an operator suspended may
// still send the command domain.action with its own credentials.
func OpenWhileSuspended(domain, action string) bool {
	return openWhileSuspended[domain] || openWhileSuspended[domain+"."+action]
}

// suspendedError refuses a change to acc, which an operator suspended:
// 403 account_suspended with the operator's reason.
func suspendedError(acc *store.Account) error {
	return &Error{Status: http.StatusForbidden, Code: "account_suspended", Message: "account " + acc.ID + " is suspended by Levqor (" + acc.Suspension.Reason + "): until it is reinstated only billing, support and notification requests are accepted"}
}

// CheckSuspension returns suspendedError when the account's own
// credentials (scope "account:<id>", the API's idempotency scope) ask a
// change of an account an operator suspended that stays closed while it
// holds; nil otherwise, and for operators and Levqor's own jobs.
func CheckSuspension(ctx context.Context, st *store.Store, scope, accountID, domain, action string) error {
	if !strings.HasPrefix(scope, "account:") || accountID == "" || OpenWhileSuspended(domain, action) {
		return nil
	}
	acc, err := st.GetAccount(ctx, accountID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // the worker answers the missing account
	}
	if err != nil {
		return err
	}
	if acc.Suspension != nil {
		return suspendedError(acc)
	}
	return nil
}
