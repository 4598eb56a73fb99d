package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/levqor/levqor/pkg/auth"
)

func (c *Console) customerRoutes() {
	c.mux.Handle("POST "+Path+"sources", c.signedIn(customersOnly, c.createSource))
	c.mux.Handle("GET "+Path+"sources/{id}/runs", c.signedIn(anyone, c.runsPart))
	c.mux.Handle("POST "+Path+"sources/{id}/run", c.signedIn(anyone, c.sourceAction("runs")))
	c.mux.Handle("POST "+Path+"sources/{id}/pause", c.signedIn(anyone, c.sourceAction("pause")))
	c.mux.Handle("POST "+Path+"sources/{id}/resume", c.signedIn(anyone, c.sourceAction("resume")))
	c.mux.Handle("GET "+Path+"snapshots/{id}", c.signedIn(anyone, c.snapshotPage))
	c.mux.Handle("GET "+Path+"snapshots/{id}/download", c.signedIn(anyone, c.download))
	c.mux.Handle("POST "+Path+"snapshots/{id}/restore-request", c.signedIn(customersOnly, c.restoreRequest))
	c.mux.Handle("GET "+Path+"tickets", c.signedIn(anyone, c.ticketsPage))
	c.mux.Handle("POST "+Path+"tickets", c.signedIn(customersOnly, c.openTicket))
	c.mux.Handle("GET "+Path+"tickets/{id}", c.signedIn(anyone, c.ticketPage))
	c.mux.Handle("POST "+Path+"tickets/{id}/reply", c.signedIn(anyone, c.replyTicket))
	c.mux.Handle("GET "+Path+"billing", c.signedIn(ownersOnly, c.billingPage))
	c.mux.Handle("POST "+Path+"billing/portal", c.signedIn(ownersOnly, c.billingPortal))
	c.mux.Handle("POST "+Path+"billing/checkout", c.signedIn(ownersOnly, c.billingCheckout))
}

// list is a page of an API list.
type list struct {
	Data []map[string]any `json:"data"`
}

// sourcePage shows one source, its runs (updating live) and snapshots.
// Another account's source is 404, as in the API.
func (c *Console) sourcePage(w http.ResponseWriter, r *http.Request, v *viewer) {
	c.renderSource(w, r, v, http.StatusOK, "")
}

func (c *Console) renderSource(w http.ResponseWriter, r *http.Request, v *viewer, status int, message string) {
	id := url.PathEscape(r.PathValue("id"))
	var src map[string]any
	var snaps, runs list
	for _, call := range []struct {
		path string
		out  any
	}{{"/v1/sources/" + id, &src}, {"/v1/sources/" + id + "/snapshots?limit=50", &snaps}, {"/v1/sources/" + id + "/runs?limit=5", &runs}} {
		if err := c.get(r, v, call.path, call.out); err != nil {
			c.apiFail(w, r, v, err)
			return
		}
	}
	c.render(w, r, v, status, "source", map[string]any{"Source": src, "Snapshots": snaps.Data, "Runs": runs.Data, "Message": message,
		"Notice": r.URL.Query().Get("done")})
}

// createSource records a source the customer's own agent backs up (the
// API lets only operators create sources Levqor runs itself).
func (c *Console) createSource(w http.ResponseWriter, r *http.Request, v *viewer) {
	body := map[string]any{"name": strings.TrimSpace(r.PostFormValue("name")), "kind": strings.TrimSpace(r.PostFormValue("kind"))}
	if s := strings.TrimSpace(r.PostFormValue("schedule")); s != "" {
		body["schedule"] = s
	}
	var out map[string]any
	err := c.call(r, v, http.MethodPost, "/v1/sources?wait=10s", body, &out)
	if ae, ok := formError(err); ok {
		c.overviewWith(w, r, v, ae.Status, map[string]any{"Form": body, "Field": ae.Field, "Message": fieldLabel(ae.Field) + ": " + ae.Message})
		return
	}
	if err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	if res, ok := out["result"].(map[string]any); ok {
		if id, _ := res["id"].(string); id != "" {
			http.Redirect(w, r, Path+"sources/"+url.PathEscape(id), http.StatusSeeOther)
			return
		}
	}
	http.Redirect(w, r, Path+"overview", http.StatusSeeOther)
}

// runsPart is the source's runs alone: what the page's live part fetches.
func (c *Console) runsPart(w http.ResponseWriter, r *http.Request, v *viewer) {
	var runs list
	if err := c.get(r, v, "/v1/sources/"+url.PathEscape(r.PathValue("id"))+"/runs?limit=5", &runs); err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	c.renderPart(w, r, "runs", map[string]any{"Runs": runs.Data, "SourceID": r.PathValue("id")})
}

// sourceAction runs one of a source's POST routes (runs, pause, resume).
func (c *Console) sourceAction(action string) page {
	return func(w http.ResponseWriter, r *http.Request, v *viewer) {
		id := r.PathValue("id")
		var out map[string]any
		if err := c.call(r, v, http.MethodPost, "/v1/sources/"+url.PathEscape(id)+"/"+action, map[string]any{}, &out); err != nil {
			if ae, ok := formError(err); ok {
				c.renderSource(w, r, v, ae.Status, ae.Message)
				return
			}
			c.apiFail(w, r, v, err)
			return
		}
		done := map[string]string{"runs": "Backup started", "pause": "Paused", "resume": "Resumed"}[action]
		http.Redirect(w, r, Path+"sources/"+url.PathEscape(id)+"?done="+url.QueryEscape(done), http.StatusSeeOther)
	}
}

// snapshotPage shows a snapshot and one directory of its files.
func (c *Console) snapshotPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := url.PathEscape(r.PathValue("id"))
	dir := strings.Trim(r.URL.Query().Get("path"), "/")
	var snap map[string]any
	if err := c.get(r, v, "/v1/snapshots/"+id, &snap); err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	var files map[string]any
	browse := ""
	err := c.get(r, v, "/v1/snapshots/"+id+"/files?path="+url.QueryEscape(dir), &files)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.Status != http.StatusNotFound && ae.Status < 500:
		browse = ae.Message // not browsable (format 1, a dump), or no such directory
	case err != nil:
		c.apiFail(w, r, v, err)
		return
	}
	var crumbs []map[string]string
	if dir != "" {
		acc := ""
		for _, part := range strings.Split(dir, "/") {
			acc = strings.TrimPrefix(acc+"/"+part, "/")
			crumbs = append(crumbs, map[string]string{"Name": part, "Path": acc})
		}
	}
	c.render(w, r, v, http.StatusOK, "snapshot", map[string]any{"Snap": snap, "Files": files, "Dir": dir, "Crumbs": crumbs,
		"Browse": browse, "Notice": r.URL.Query().Get("done")})
}

// download streams one file, or a directory as a tar stream, from the
// API straight to the browser: nothing is held in memory.
func (c *Console) download(w http.ResponseWriter, r *http.Request, v *viewer) {
	path := "/v1/snapshots/" + url.PathEscape(r.PathValue("id")) + "/download?path=" + url.QueryEscape(r.URL.Query().Get("path"))
	req, err := http.NewRequestWithContext(auth.Delegate(r.Context(), v.principal()), http.MethodGet, path, nil)
	if err != nil {
		c.fail(w, r, err, http.StatusBadRequest, "This download link is not valid.")
		return
	}
	req.RemoteAddr = r.RemoteAddr
	// The API's answer (a file, or its error shape) goes to the browser
	// as it is, with the console's security headers.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; sandbox")
	c.api.ServeHTTP(w, req)
}

// restoreRequest asks Levqor's staff, through a ticket, to restore a
// snapshot: restores into servers are operator actions.
func (c *Console) restoreRequest(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := r.PathValue("id")
	var snap map[string]any
	if err := c.get(r, v, "/v1/snapshots/"+url.PathEscape(id), &snap); err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	where := strings.TrimSpace(r.PostFormValue("where"))
	if len(where) > 2000 {
		c.fail(w, r, nil, http.StatusUnprocessableEntity, "Where: at most 2000 characters.")
		return
	}
	body := fmt.Sprintf("Please restore snapshot %s (taken %v).", id, snap["taken_at"])
	if where != "" {
		body += "\n\nWhere and how: " + where
	}
	var t map[string]any
	err := c.call(r, v, http.MethodPost, "/v1/tickets?wait=10s", map[string]any{"subject": "Restore request: snapshot " + id, "body": body, "category": "restore"}, &t)
	var ae *apiError
	if errors.As(err, &ae) && ae.Field == "category" {
		// The support rules have no restore category: let triage pick.
		err = c.call(r, v, http.MethodPost, "/v1/tickets?wait=10s", map[string]any{"subject": "Restore request: snapshot " + id, "body": body}, &t)
	}
	if err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	toTicket(w, r, t)
}

// toTicket sends the browser to the ticket a command answered (its
// result), or to the list when the command has not answered yet.
func toTicket(w http.ResponseWriter, r *http.Request, answer map[string]any) {
	if res, ok := answer["result"].(map[string]any); ok {
		if id, _ := res["id"].(string); id != "" {
			http.Redirect(w, r, Path+"tickets/"+url.PathEscape(id), http.StatusSeeOther)
			return
		}
	}
	http.Redirect(w, r, Path+"tickets", http.StatusSeeOther)
}

// codeSuspended is the API's refusal of a change to an account an
// operator suspended: its message says why, and is shown as it is.
const codeSuspended = "account_suspended"

// formError is an API refusal of what a form sent (a 4xx other than not
// found, too many requests, or a forbidden route), to show on the form
// with the field it names.
func formError(err error) (*apiError, bool) {
	var ae *apiError
	if errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 && ae.Status != http.StatusNotFound && ae.Status != http.StatusTooManyRequests &&
		// A 403 naming a field refuses a value, not the page; so does a
		// suspended account's.
		(ae.Status != http.StatusForbidden || ae.Field != "" || ae.Code == codeSuspended) {
		return ae, true
	}
	return nil, false
}

func (c *Console) ticketsPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	c.renderTickets(w, r, v, http.StatusOK, nil)
}

func (c *Console) renderTickets(w http.ResponseWriter, r *http.Request, v *viewer, status int, form map[string]any) {
	var tickets list
	if err := c.get(r, v, "/v1/tickets?limit=100", &tickets); err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	c.render(w, r, v, status, "tickets", map[string]any{"Tickets": tickets.Data, "Form": form})
}

// openTicket opens a ticket from the form; the API's validation names
// the field at fault.
func (c *Console) openTicket(w http.ResponseWriter, r *http.Request, v *viewer) {
	form := map[string]any{"Subject": strings.TrimSpace(r.PostFormValue("subject")), "Body": strings.TrimSpace(r.PostFormValue("body"))}
	var t map[string]any
	err := c.call(r, v, http.MethodPost, "/v1/tickets?wait=10s", map[string]any{"subject": form["Subject"], "body": form["Body"]}, &t)
	if ae, ok := formError(err); ok {
		form["Field"], form["Message"] = ae.Field, fieldLabel(ae.Field)+": "+ae.Message
		c.renderTickets(w, r, v, ae.Status, form)
		return
	}
	if err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	toTicket(w, r, t)
}

func (c *Console) ticketPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	c.renderTicket(w, r, v, http.StatusOK, nil)
}

func (c *Console) renderTicket(w http.ResponseWriter, r *http.Request, v *viewer, status int, form map[string]any) {
	id := url.PathEscape(r.PathValue("id"))
	var t map[string]any
	var msgs list
	if err := c.get(r, v, "/v1/tickets/"+id, &t); err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	if err := c.get(r, v, "/v1/tickets/"+id+"/messages?limit=200", &msgs); err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	c.render(w, r, v, status, "ticket", map[string]any{"Ticket": t, "Messages": msgs.Data, "Form": form})
}

func (c *Console) replyTicket(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := r.PathValue("id")
	body := strings.TrimSpace(r.PostFormValue("body"))
	err := c.call(r, v, http.MethodPost, "/v1/tickets/"+url.PathEscape(id)+"/messages?wait=10s", map[string]any{"body": body}, nil)
	if ae, ok := formError(err); ok {
		c.renderTicket(w, r, v, ae.Status, map[string]any{"Body": body, "Field": ae.Field, "Message": fieldLabel(ae.Field) + ": " + ae.Message})
		return
	}
	if err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	http.Redirect(w, r, Path+"tickets/"+url.PathEscape(id), http.StatusSeeOther)
}

// billingPage shows the plan, its status and the invoices (owners).
func (c *Console) billingPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	c.renderBilling(w, r, v, http.StatusOK, "")
}

func (c *Console) renderBilling(w http.ResponseWriter, r *http.Request, v *viewer, status int, message string) {
	var b map[string]any
	if err := c.get(r, v, "/v1/accounts/"+url.PathEscape(v.User.AccountID)+"/billing", &b); err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	c.render(w, r, v, status, "billing", map[string]any{"Billing": b, "Message": message})
}

// billingPortal opens a Stripe customer portal session and sends the
// browser there.
func (c *Console) billingPortal(w http.ResponseWriter, r *http.Request, v *viewer) {
	c.stripeRedirect(w, r, v, "/v1/billing/portal-sessions?wait=15s", map[string]any{"return_url": c.publicURL(r) + Path + "billing"})
}

// billingCheckout opens a Stripe Checkout session for the chosen plan.
func (c *Console) billingCheckout(w http.ResponseWriter, r *http.Request, v *viewer) {
	back := c.publicURL(r) + Path + "billing"
	c.stripeRedirect(w, r, v, "/v1/billing/checkout-sessions?wait=15s", map[string]any{
		"items":       []map[string]any{{"key": strings.TrimSpace(r.PostFormValue("plan")), "quantity": 1}},
		"success_url": back + "?done=checkout", "cancel_url": back})
}

func (c *Console) stripeRedirect(w http.ResponseWriter, r *http.Request, v *viewer, path string, body map[string]any) {
	var out struct {
		Status string `json:"status"`
		Result struct {
			URL string `json:"url"`
		} `json:"result"`
		Error *apiError `json:"error"`
	}
	err := c.call(r, v, http.MethodPost, path, body, &out)
	if err == nil && out.Error != nil {
		// The command ran and failed: its error, in the API's shape.
		out.Error.Status = http.StatusUnprocessableEntity
		err = out.Error
	}
	if ae, ok := formError(err); ok {
		c.renderBilling(w, r, v, ae.Status, fieldLabel(ae.Field)+": "+ae.Message)
		return
	}
	if err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	if u := out.Result.URL; strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
		http.Redirect(w, r, u, http.StatusSeeOther)
		return
	}
	c.fail(w, r, fmt.Errorf("no session URL (command %s)", out.Status), http.StatusBadGateway, "Stripe did not answer a page to go to yet; try again.")
}

// emailBase is the base of links sent by email: LEVQOR_PUBLIC_URL, or in
// dev mode the request's own origin. Outside dev mode without it there is
// none: the Host header is the client's to write, and a reset link to a
// host of an attacker's choosing would hand them the account.
func (c *Console) emailBase(r *http.Request) (string, bool) {
	if c.cfg.PublicURL != "" || c.cfg.Insecure {
		return c.publicURL(r), true
	}
	return "", false
}

// publicURL is LEVQOR_PUBLIC_URL, or the request's own origin: for
// addresses the browser goes to now (its own host) and redirect URIs a
// provider checks against those registered.
func (c *Console) publicURL(r *http.Request) string {
	if c.cfg.PublicURL != "" {
		return strings.TrimRight(c.cfg.PublicURL, "/")
	}
	scheme := "https"
	if r.TLS == nil && c.cfg.Insecure {
		scheme = "http"
	}
	return scheme + "://" + r.Host
}
