package command

import (
	"context"
	"fmt"
	"net/http"
)

// Actions maps a domain's actions to the Funcs that carry them out.
type Actions map[string]Func

// Route carries out e with the Func its action names in actions: the one
// dispatch every worker's command handler needs. A command of another
// domain, or an action the domain does not know, fails with 422
// unsupported_command; worker names who refused it, e.g. "billing".
func Route(ctx context.Context, e *Envelope, worker, domain string, actions Actions) (Effect, error) {
	if e.Domain != domain {
		return nil, Fail(http.StatusUnprocessableEntity, "unsupported_command", "",
			fmt.Sprintf("the %s worker does not handle %s", worker, e.Type()))
	}
	fn, ok := actions[e.Action]
	if !ok {
		return nil, Fail(http.StatusUnprocessableEntity, "unsupported_command", "",
			fmt.Sprintf("unknown %s command %q", domain, e.Action))
	}
	return fn(ctx, e)
}
