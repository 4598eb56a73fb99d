package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/people"
	"github.com/levqor/levqor/pkg/scheduler"
)

func (c *Console) routes() {
	static, _ := fs.Sub(staticFS, "static")
	c.mux.Handle("GET "+Path+"static/", http.StripPrefix(Path+"static/", http.FileServerFS(static)))
	c.mux.HandleFunc("GET "+Path+"signin", c.signinPage)
	c.mux.HandleFunc("POST "+Path+"signin", c.signin)
	c.mux.HandleFunc("GET "+Path+"oidc/{name}", c.oidcStart)
	c.mux.HandleFunc("GET "+Path+"oidc/{name}/callback", c.oidcCallback)
	c.mux.HandleFunc("GET "+Path+"invite/{token}", c.invitePage)
	c.mux.HandleFunc("POST "+Path+"invite/{token}", c.acceptInvite)
	c.mux.Handle("GET "+Path+"{$}", c.signedIn(anyone, c.home))
	c.mux.Handle("POST "+Path+"signout", c.signedIn(anyone, c.signout))
	c.mux.Handle("POST "+Path+"signout-everywhere", c.signedIn(anyone, c.signoutEverywhere))
	c.mux.Handle("GET "+Path+"overview", c.signedIn(customersOnly, c.overview))
	c.mux.Handle("GET "+Path+"sources/{id}", c.signedIn(anyone, c.sourcePage))
	c.mux.HandleFunc("GET "+Path+"reset", c.resetPage)
	c.mux.HandleFunc("POST "+Path+"reset", c.requestReset)
	c.mux.HandleFunc("GET "+Path+"reset/{token}", c.newPasswordPage)
	c.mux.HandleFunc("POST "+Path+"reset/{token}", c.setPassword)
	c.customerRoutes()
	c.ownerRoutes()
	c.operatorRoutes()
	c.mux.Handle("GET "+Path+"ops/dlq", c.signedIn(operatorsOnly, c.dlqPage))
	c.mux.Handle("GET "+Path+"ops/dlq/{seq}", c.signedIn(operatorsOnly, c.dlqShow))
	c.mux.Handle("POST "+Path+"ops/dlq/{seq}/replay", c.signedIn(operatorsOnly, c.dlqAct("replay")))
	c.mux.Handle("POST "+Path+"ops/dlq/{seq}/purge", c.signedIn(operatorsOnly, c.dlqAct("purge")))
	c.mux.HandleFunc(Path, func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, nil, http.StatusNotFound, "There is nothing here.")
	})
}

// home sends a person to their first page.
func (c *Console) home(w http.ResponseWriter, r *http.Request, v *viewer) {
	to := Path + "overview"
	if v.Operator() {
		to = Path + "ops/status"
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// signinPage shows the sign-in form with a fresh anti-forgery token.
func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	c.renderSignin(w, r, http.StatusOK, "", r.URL.Query().Get("next"), "")
}

func (c *Console) renderSignin(w http.ResponseWriter, r *http.Request, status int, email, next, message string) {
	tok, err := randomToken()
	if err != nil {
		c.fail(w, r, err, http.StatusInternalServerError, "The console could not start a sign-in.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: tok, Path: Path + "signin", HttpOnly: true, Secure: !c.cfg.Insecure,
		SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	var providers []map[string]string
	for _, p := range c.cfg.OIDC {
		providers = append(providers, map[string]string{"Name": p.Name, "Label": label(p)})
	}
	c.render(w, r, nil, status, "signin", map[string]any{"CSRF": tok, "Email": email, "Next": localNext(next), "Message": message,
		"Reset": r.URL.Query().Get("reset") == "1", "Providers": providers})
}

// signin checks the form and opens a session.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(signinCookie)
	if err != nil || ck.Value == "" || r.PostFormValue("csrf") != ck.Value {
		c.renderSignin(w, r, http.StatusForbidden, "", r.PostFormValue("next"), "This form expired. Try again.")
		return
	}
	email, password, next := strings.TrimSpace(r.PostFormValue("email")), r.PostFormValue("password"), r.PostFormValue("next")
	switch {
	case email == "":
		c.renderSignin(w, r, http.StatusUnprocessableEntity, email, next, "Email: enter the email you were invited with.")
		return
	case password == "":
		c.renderSignin(w, r, http.StatusUnprocessableEntity, email, next, "Password: enter your password.")
		return
	}
	secret, u, err := c.people.SignIn(r.Context(), email, password, c.clientAddr(r), r.UserAgent())
	switch {
	case errors.Is(err, people.ErrSignInFailed):
		c.renderSignin(w, r, http.StatusUnauthorized, email, next, "The email or password is wrong, or sign-in is locked for a while after repeated failures.")
		return
	case errors.Is(err, people.ErrThrottled):
		w.Header().Set("Retry-After", "60")
		c.renderSignin(w, r, http.StatusTooManyRequests, email, next, "Too many attempts. Wait a minute and try again.")
		return
	case err != nil:
		c.fail(w, r, err, http.StatusServiceUnavailable, "Sign-in is unavailable; try again shortly.")
		return
	}
	c.log.WithFields(logrus.Fields{"user_id": u.ID, "role": u.Role}).Info("signed in")
	c.setSession(w, secret)
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: "", Path: Path + "signin", MaxAge: -1})
	http.Redirect(w, r, localNext(next), http.StatusSeeOther)
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request, v *viewer) {
	if err := c.people.SignOut(r.Context(), v.secret); err != nil {
		c.fail(w, r, err, http.StatusServiceUnavailable, "Could not sign out; try again.")
		return
	}
	c.clearSession(w)
	http.Redirect(w, r, Path+"signin", http.StatusSeeOther)
}

func (c *Console) signoutEverywhere(w http.ResponseWriter, r *http.Request, v *viewer) {
	n, err := c.people.SignOutEverywhere(r.Context(), v.User.ID)
	if err != nil {
		c.fail(w, r, err, http.StatusServiceUnavailable, "Could not sign out; try again.")
		return
	}
	c.log.WithFields(logrus.Fields{"user_id": v.User.ID, "sessions": n}).Info("signed out everywhere")
	c.clearSession(w)
	http.Redirect(w, r, Path+"signin", http.StatusSeeOther)
}

func (c *Console) invitePage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, nil, http.StatusOK, "invite", map[string]any{"Token": r.PathValue("token")})
}

// acceptInvite creates the invited user and signs them in. The link's
// secret is the form's anti-forgery token: a forged form would need it.
func (c *Console) acceptInvite(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	name, password := strings.TrimSpace(r.PostFormValue("name")), r.PostFormValue("password")
	if password != r.PostFormValue("confirm") {
		c.render(w, r, nil, http.StatusUnprocessableEntity, "invite", map[string]any{"Token": token, "Name": name, "Field": "confirm", "Message": "Confirm: the two passwords differ."})
		return
	}
	u, err := c.people.AcceptInvitation(r.Context(), token, name, password)
	var fe *people.FieldError
	switch {
	case errors.As(err, &fe):
		c.render(w, r, nil, http.StatusUnprocessableEntity, "invite", map[string]any{"Token": token, "Name": name, "Field": fe.Field, "Message": fieldLabel(fe.Field) + ": " + fe.Message + "."})
		return
	case errors.Is(err, people.ErrLink):
		c.fail(w, r, nil, http.StatusGone, "This invitation is not valid any more: it was used, or it expired. Ask for a new one.")
		return
	case err != nil:
		c.fail(w, r, err, http.StatusServiceUnavailable, "The invitation could not be accepted now; try again shortly.")
		return
	}
	secret, err := c.people.OpenSession(r.Context(), u, c.clientAddr(r), r.UserAgent())
	if err != nil {
		c.fail(w, r, err, http.StatusServiceUnavailable, "Your user was created; sign in to continue.")
		return
	}
	c.setSession(w, secret)
	http.Redirect(w, r, Path, http.StatusSeeOther)
}

func fieldLabel(f string) string {
	if f == "" {
		return ""
	}
	return strings.ToUpper(f[:1]) + f[1:]
}

// overview is a customer's first page: plan and billing status,
// storage used against the quota, each source's backup health, open
// tickets.
func (c *Console) overview(w http.ResponseWriter, r *http.Request, v *viewer) {
	c.overviewWith(w, r, v, http.StatusOK, map[string]any{})
}

// overviewWith renders the overview with status and data besides (a
// form's values and its error).
func (c *Console) overviewWith(w http.ResponseWriter, r *http.Request, v *viewer, status int, data map[string]any) {
	var sources, tickets list
	if err := c.get(r, v, "/v1/sources?limit=100", &sources); err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	if err := c.get(r, v, "/v1/tickets?status=open,pending&limit=100", &tickets); err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	var health []map[string]any
	for i, src := range sources.Data {
		if i == overviewSources {
			break
		}
		h, err := c.sourceHealth(r, v, src)
		if err != nil {
			c.apiFail(w, r, v, err)
			return
		}
		health = append(health, h)
	}
	used, err := c.store.AccountStoredBytes(r.Context(), v.User.AccountID)
	if err != nil {
		c.fail(w, r, err, http.StatusServiceUnavailable, "The console cannot reach its database; try again shortly.")
		return
	}
	var quota float64
	if ent, ok := v.Account["entitlements"].(map[string]any); ok {
		gb, _ := ent["storage_gb"].(float64)
		quota = gb * 1e9
	}
	share := 0.0
	if quota > 0 {
		share = 100 * float64(used) / quota
	}
	for k, val := range map[string]any{"Sources": health, "More": len(sources.Data) > overviewSources,
		"Tickets": tickets.Data, "Used": float64(used), "Quota": quota, "Share": fmt.Sprintf("%.0f", share)} {
		data[k] = val
	}
	c.render(w, r, v, status, "overview", data)
}

// overviewSources is how many sources the overview describes.
const overviewSources = 25

// sourceHealth describes a source's backups: its last good snapshot, when
// the next is due, and whether it is paused, overdue or has corrupt
// snapshots.
func (c *Console) sourceHealth(r *http.Request, v *viewer, src map[string]any) (map[string]any, error) {
	id, _ := src["id"].(string)
	var detail map[string]any
	var last list
	if err := c.get(r, v, "/v1/sources/"+url.PathEscape(id), &detail); err != nil {
		return nil, err
	}
	if err := c.get(r, v, "/v1/sources/"+url.PathEscape(id)+"/snapshots?state=active&limit=20", &last); err != nil {
		return nil, err
	}
	h := map[string]any{"ID": id, "Name": src["name"], "Kind": src["kind"], "Health": "ok"}
	var good map[string]any
	corrupt := 0
	for _, s := range last.Data {
		switch {
		case s["integrity"] == "corrupt":
			corrupt++
		case good == nil:
			good = s
		}
	}
	h["Last"] = good
	now := c.now()
	sched, _ := src["schedule"].(string)
	zone, _ := src["time_zone"].(string)
	if runnable, _ := detail["runnable"].(bool); runnable && sched != "" {
		if s, err := (scheduler.Job{Name: "backup", Spec: sched, TimeZone: zone}).Schedule(); err == nil {
			next := s.Next(now)
			h["Next"] = next.UTC().Format(time.RFC3339)
			every := s.Next(next).Sub(next)
			since := now
			if good != nil {
				since, _ = time.Parse(time.RFC3339Nano, fmt.Sprint(good["taken_at"]))
			} else if created, err := time.Parse(time.RFC3339Nano, fmt.Sprint(src["created_at"])); err == nil {
				since = created
			}
			if now.Sub(since) > every+time.Hour {
				h["Health"] = "overdue"
			}
		}
	}
	// Of its 20 newest snapshots, those found corrupt.
	h["Corrupt"] = corrupt
	if corrupt > 0 {
		h["Health"] = "corrupt"
	}
	if src["paused_at"] != nil {
		h["Health"] = "paused"
	}
	h["Snapshots"] = tally(detail["snapshots"], "active")
	return h, nil
}

func tally(snaps any, state string) float64 {
	m, _ := snaps.(map[string]any)
	t, _ := m[state].(map[string]any)
	f, _ := t["count"].(float64)
	return f
}

// dlqPage lists dead letters, oldest first.
func (c *Console) dlqPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	var list map[string]any
	if err := c.get(r, v, "/admin/dlq?limit=200", &list); err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	c.render(w, r, v, http.StatusOK, "dlq", map[string]any{"List": list, "Done": r.URL.Query().Get("done")})
}

// dlqShow shows one dead letter with its headers and payload, and the
// replay and purge forms.
func (c *Console) dlqShow(w http.ResponseWriter, r *http.Request, v *viewer) {
	c.renderDLQ(w, r, v, http.StatusOK, "", "")
}

func (c *Console) renderDLQ(w http.ResponseWriter, r *http.Request, v *viewer, status int, field, message string) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		c.fail(w, r, nil, http.StatusNotFound, "There is nothing here.")
		return
	}
	var dl map[string]any
	if err := c.get(r, v, fmt.Sprintf("/admin/dlq/%d", seq), &dl); err != nil {
		c.apiFail(w, r, v, err)
		return
	}
	c.render(w, r, v, status, "dlq_show", map[string]any{"DL": dl, "Seq": seq, "Field": field, "Message": message})
}

// dlqAct replays or purges one dead letter, with the operator's reason in
// the audit trail.
func (c *Console) dlqAct(action string) page {
	return func(w http.ResponseWriter, r *http.Request, v *viewer) {
		seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
		if err != nil || seq == 0 {
			c.fail(w, r, nil, http.StatusNotFound, "There is nothing here.")
			return
		}
		note := strings.TrimSpace(r.PostFormValue("note"))
		switch {
		case note == "":
			c.renderDLQ(w, r, v, http.StatusUnprocessableEntity, "note", "Reason: say why, for the audit trail.")
			return
		case len(note) > 500:
			c.renderDLQ(w, r, v, http.StatusUnprocessableEntity, "note", "Reason: at most 500 characters.")
			return
		case r.PostFormValue("confirm") != "yes":
			c.renderDLQ(w, r, v, http.StatusUnprocessableEntity, "confirm", "Confirm: tick the box to "+action+" this dead letter.")
			return
		}
		var res struct {
			Succeeded int `json:"succeeded"`
			Items     []struct {
				Status string `json:"status"`
				Error  string `json:"error"`
			} `json:"items"`
		}
		if err := c.call(r, v, http.MethodPost, "/admin/dlq/"+action, map[string]any{"seqs": []uint64{seq}, "note": note}, &res); err != nil {
			c.apiFail(w, r, v, err)
			return
		}
		if res.Succeeded != 1 {
			msg := "It could not be done."
			if len(res.Items) == 1 && res.Items[0].Error != "" {
				msg = res.Items[0].Error
			}
			c.renderDLQ(w, r, v, http.StatusConflict, "", msg)
			return
		}
		done := map[string]string{"replay": "Replayed", "purge": "Purged"}[action]
		http.Redirect(w, r, Path+"ops/dlq?done="+url.QueryEscape(fmt.Sprintf("%s dead letter %d", done, seq)), http.StatusSeeOther)
	}
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"when": func(v any) string {
		s, _ := v.(string)
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"bytes": func(v any) string {
		f, _ := v.(float64)
		switch {
		case f >= 1e9:
			return fmt.Sprintf("%.1f GB", f/1e9)
		case f >= 1e6:
			return fmt.Sprintf("%.1f MB", f/1e6)
		case f >= 1e3:
			return fmt.Sprintf("%.1f kB", f/1e3)
		}
		return fmt.Sprintf("%.0f B", f)
	},
	"count": func(v any) string {
		f, _ := v.(float64)
		return strconv.FormatFloat(f, 'f', 0, 64)
	},
	"dict": func(kv ...any) (map[string]any, error) {
		if len(kv)%2 != 0 {
			return nil, errors.New("dict: an odd number of arguments")
		}
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			k, ok := kv[i].(string)
			if !ok {
				return nil, errors.New("dict: a key is not a string")
			}
			m[k] = kv[i+1]
		}
		return m, nil
	},
	"json": func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(b)
	},
	"money": func(amount any, currency any) string {
		f, _ := amount.(float64)
		cur, _ := currency.(string)
		return fmt.Sprintf("%.2f %s", f/100, strings.ToUpper(cur))
	},
	"tally": tally,
}

// resetPage asks for the email to send a password reset link to.
func (c *Console) resetPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, nil, http.StatusOK, "reset", map[string]any{})
}

// requestReset emails a reset link when the email has a user, and says
// the same whether or not it has.
func (c *Console) requestReset(w http.ResponseWriter, r *http.Request) {
	email := strings.TrimSpace(r.PostFormValue("email"))
	if email == "" {
		c.render(w, r, nil, http.StatusUnprocessableEntity, "reset", map[string]any{"Message": "Email: enter the email you sign in with."})
		return
	}
	secret, u, err := c.people.RequestReset(r.Context(), email, c.clientAddr(r))
	switch {
	case errors.Is(err, people.ErrThrottled):
		w.Header().Set("Retry-After", "60")
		c.render(w, r, nil, http.StatusTooManyRequests, "reset", map[string]any{"Message": "Too many attempts. Wait a minute and try again."})
		return
	case err != nil:
		c.fail(w, r, err, http.StatusServiceUnavailable, "Password reset is unavailable; try again shortly.")
		return
	}
	if base, ok := c.emailBase(r); u != nil && ok {
		link := base + Path + "reset/" + url.PathEscape(secret)
		body := fmt.Sprintf("Someone asked to reset the password of your Levqor user %s. If it was you, choose a new one here within the hour (the link works once):\n\n%s\n\nIf it was not you, ignore this message: your password stays as it is.\n", u.Email, link)
		// Sent after the answer: how long a mail server takes must not
		// tell whether the email has a user.
		go func(email, userID string) {
			if err := c.mail(context.WithoutCancel(r.Context()), email, "Reset your Levqor password", body); err != nil {
				c.log.WithFields(logrus.Fields{"error": err.Error(), "user_id": userID}).Error("password reset email not sent")
			}
		}(u.Email, u.ID)
	} else if u != nil {
		c.log.WithField("user_id", u.ID).Error("password reset asked, but LEVQOR_PUBLIC_URL is not set: no link can be sent")
	}
	c.render(w, r, nil, http.StatusOK, "reset", map[string]any{"Sent": true})
}

func (c *Console) newPasswordPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, nil, http.StatusOK, "reset_new", map[string]any{"Token": r.PathValue("token")})
}

// setPassword sets the new password from a reset link; every session of
// the user ends, and they sign in again.
func (c *Console) setPassword(w http.ResponseWriter, r *http.Request) {
	token, password := r.PathValue("token"), r.PostFormValue("password")
	if password != r.PostFormValue("confirm") {
		c.render(w, r, nil, http.StatusUnprocessableEntity, "reset_new", map[string]any{"Token": token, "Field": "confirm", "Message": "Confirm: the two passwords differ."})
		return
	}
	u, err := c.people.ResetPassword(r.Context(), token, password)
	var fe *people.FieldError
	switch {
	case errors.As(err, &fe):
		c.render(w, r, nil, http.StatusUnprocessableEntity, "reset_new", map[string]any{"Token": token, "Field": fe.Field, "Message": fieldLabel(fe.Field) + ": " + fe.Message + "."})
		return
	case errors.Is(err, people.ErrLink):
		c.fail(w, r, nil, http.StatusGone, "This link is not valid any more: it was used, or it expired. Ask for a new one.")
		return
	case err != nil:
		c.fail(w, r, err, http.StatusServiceUnavailable, "The password could not be set now; try again shortly.")
		return
	}
	c.log.WithField("user_id", u.ID).Info("password reset; every session ended")
	c.clearSession(w)
	http.Redirect(w, r, Path+"signin?reset=1", http.StatusSeeOther)
}
