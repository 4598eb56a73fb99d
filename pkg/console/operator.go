package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

func (c *Console) operatorRoutes() {
	c.mux.Handle("GET "+Path+"ops/status", c.signedIn(operatorsOnly, c.statusPage))
	c.mux.Handle("GET "+Path+"ops/audit", c.signedIn(operatorsOnly, c.auditPage))
	c.mux.Handle("GET "+Path+"ops/replay", c.signedIn(operatorsOnly, c.replayPage))
	c.mux.Handle("POST "+Path+"ops/replay", c.signedIn(operatorsOnly, c.replayWindow))
	c.mux.Handle("GET "+Path+"ops/accounts", c.signedIn(operatorsOnly, c.accountsPage))
	c.mux.Handle("GET "+Path+"ops/accounts/{id}", c.signedIn(operatorsOnly, c.accountPage))
	c.mux.Handle("POST "+Path+"ops/accounts/{id}/suspend", c.signedIn(operatorsOnly, c.suspension("suspend")))
	c.mux.Handle("POST "+Path+"ops/accounts/{id}/reinstate", c.signedIn(operatorsOnly, c.suspension("reinstate")))
}

// statusPage is what `levqor status` shows: every consumer, its lag,
// what is stuck, and the dead letters.
func (c *Console) statusPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	var st map[string]any
	if err := c.get(r, v, "/admin/consumers", &st); err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	c.render(w, r, v, http.StatusOK, "status", map[string]any{"Status": st})
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	q := url.Values{"limit": {"100"}}
	for _, k := range []string{"action", "actor"} {
		if s := strings.TrimSpace(r.URL.Query().Get(k)); s != "" {
			q.Set(k, s)
		}
	}
	var out map[string]any
	if err := c.get(r, v, "/admin/audit?"+q.Encode(), &out); err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	c.render(w, r, v, http.StatusOK, "audit", map[string]any{"Audit": out, "Action": q.Get("action"), "Actor": q.Get("actor")})
}

func (c *Console) replayPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	c.renderReplay(w, r, v, http.StatusOK, map[string]any{})
}

func (c *Console) renderReplay(w http.ResponseWriter, r *http.Request, v *viewer, status int, data map[string]any) {
	var st map[string]any
	if err := c.get(r, v, "/admin/consumers", &st); err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	data["Status"] = st
	data["Selected"] = ""
	if f, ok := data["Form"].(map[string]any); ok {
		data["Selected"] = f["consumer"]
	}
	c.render(w, r, v, status, "replay", data)
}

// replayWindow re-runs a window of a stream through one consumer: a dry
// run first (the form's default), for real once confirmed.
func (c *Console) replayWindow(w http.ResponseWriter, r *http.Request, v *viewer) {
	f := map[string]any{}
	for _, k := range []string{"consumer", "since", "until", "subject", "note"} {
		f[k] = strings.TrimSpace(r.PostFormValue(k))
	}
	dry := r.PostFormValue("confirm") != "yes"
	data := map[string]any{"Form": f}
	if f["note"] == "" {
		data["Field"], data["Message"] = "note", "Reason: say why, for the audit trail."
		c.renderReplay(w, r, v, http.StatusUnprocessableEntity, data)
		return
	}
	body := map[string]any{"consumer": f["consumer"], "since": f["since"], "until": f["until"], "subject": f["subject"],
		"note": f["note"], "dry_run": dry, "force": r.PostFormValue("force") == "yes"}
	var res map[string]any
	err := c.call(r, v, http.MethodPost, "/admin/replay", body, &res)
	if ae, ok := formError(err); ok {
		data["Field"], data["Message"] = ae.Field, fieldLabel(ae.Field)+": "+ae.Message
		c.renderReplay(w, r, v, ae.Status, data)
		return
	}
	if err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	data["Result"], data["DryRun"] = res, dry
	c.renderReplay(w, r, v, http.StatusOK, data)
}

// accountsPage lists accounts, newest first, a page at a time.
func (c *Console) accountsPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	q := url.Values{"limit": {"50"}}
	if cur := r.URL.Query().Get("cursor"); cur != "" {
		q.Set("cursor", cur)
	}
	var out struct {
		Data       []map[string]any `json:"data"`
		NextCursor *string          `json:"next_cursor"`
	}
	if err := c.get(r, v, "/v1/accounts?"+q.Encode(), &out); err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	// Search narrows the page by name, email or id, for the operator's
	// eye; the list itself pages through every account.
	term := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("q")))
	rows := out.Data
	if term != "" {
		rows = nil
		for _, a := range out.Data {
			hay := strings.ToLower(fmt.Sprint(a["id"], " ", a["name"], " ", a["contact_email"], " ", a["stripe_customer_id"]))
			if strings.Contains(hay, term) {
				rows = append(rows, a)
			}
		}
	}
	next := ""
	if out.NextCursor != nil {
		next = *out.NextCursor
	}
	c.render(w, r, v, http.StatusOK, "accounts", map[string]any{"Accounts": rows, "Q": term, "Next": next})
}

// accountPage shows one account: billing, sources, tickets and people,
// and its suspension.
func (c *Console) accountPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	c.renderAccount(w, r, v, http.StatusOK, map[string]any{"Done": r.URL.Query().Get("done")})
}

func (c *Console) renderAccount(w http.ResponseWriter, r *http.Request, v *viewer, status int, data map[string]any) {
	id := url.PathEscape(r.PathValue("id"))
	var acc, billing map[string]any
	var sources, tickets list
	for _, call := range []struct {
		path string
		out  any
	}{{"/v1/accounts/" + id, &acc}, {"/v1/accounts/" + id + "/billing", &billing},
		{"/v1/sources?limit=100&account_id=" + url.QueryEscape(r.PathValue("id")), &sources},
		{"/v1/tickets?limit=50&account_id=" + url.QueryEscape(r.PathValue("id")), &tickets}} {
		if err := c.get(r, v, call.path, call.out); err != nil {
			c.apiFail(w, r, v, err)
			return
		}
	}
	users, err := c.store.ListUsers(r.Context(), r.PathValue("id"), false)
	if err != nil {
		c.fail(w, r, err, http.StatusServiceUnavailable, "The console cannot reach its database; try again shortly.")
		return
	}
	data["Account"], data["Billing"], data["Sources"], data["Tickets"], data["Users"] = acc, billing, sources.Data, tickets.Data, users
	c.render(w, r, v, status, "account", data)
}

// suspension suspends the account or lifts its suspension (action is
// suspend or reinstate), with a reason its people will read and a
// confirmation; the API keeps the reason in the audit trail.
func (c *Console) suspension(action string) page {
	return func(w http.ResponseWriter, r *http.Request, v *viewer) {
		reason := strings.TrimSpace(r.PostFormValue("reason"))
		data := map[string]any{"Form": map[string]any{"action": action, "reason": reason}}
		refuse := func(status int, field, message string) {
			data["Field"], data["Message"] = field, message
			c.renderAccount(w, r, v, status, data)
		}
		if reason == "" {
			refuse(http.StatusUnprocessableEntity, "reason", "Reason: say why; the account's people will read it.")
			return
		}
		if r.PostFormValue("confirm") != "yes" {
			refuse(http.StatusUnprocessableEntity, "confirm", "Confirm: tick the box to "+action+" the account.")
			return
		}
		id := r.PathValue("id")
		var out struct {
			Status string `json:"status"`
		}
		err := c.call(r, v, http.MethodPost, "/v1/accounts/"+url.PathEscape(id)+"/"+action+"?wait=10s", map[string]any{"reason": reason}, &out)
		if ae, ok := formError(err); ok {
			refuse(ae.Status, ae.Field, fieldLabel(ae.Field)+": "+ae.Message)
			return
		}
		if err != nil {
			c.apiFail(w, r, v, err)
			return
		}
		done := map[string]string{"suspend": "Suspended", "reinstate": "Suspension lifted"}[action]
		if out.Status != "succeeded" {
			done = "Queued: the billing worker has not carried it out yet; reload to see it"
		}
		http.Redirect(w, r, Path+"ops/accounts/"+url.PathEscape(id)+"?done="+url.QueryEscape(done), http.StatusSeeOther)
	}
}
