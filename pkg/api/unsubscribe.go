package api

import (
	"errors"
	"html/template"
	"io"
	"net/http"
	"time"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/store"
)

// unsubscribeWait is how long a POST to an unsubscribe link waits for the
// notify worker to mute the event, so that the page it answers says it is
// done.
const unsubscribeWait = 10 * time.Second

// unsubscribeBodyMax bounds what a one-click client may post (RFC 8058
// sends "List-Unsubscribe=One-Click").
const unsubscribeBodyMax = 1 << 10

// registerUnsubscribe adds the unsubscribe link's page (GET: asks to
// confirm, so that a mail scanner following links mutes nothing) and its
// action (POST: the page's button, or a mail client's one-click). The link
// signs itself: no key is asked, and failed links count against the
// address like failed authentications.
func (s *Server) registerUnsubscribe(handle func(pattern string, h http.Handler)) {
	handle("GET "+notify.UnsubscribePath, s.failGate(http.HandlerFunc(s.unsubscribePage)))
	handle("POST "+notify.UnsubscribePath, s.failGate(http.HandlerFunc(s.unsubscribe)))
}

var unsubscribeTemplate = template.Must(template.New("unsubscribe").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="robots" content="noindex, nofollow"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · Levqor</title></head>
<body style="font-family: -apple-system, 'Segoe UI', Roboto, sans-serif; background: #0f172a; color: #e2e8f0; margin: 0; padding: 24px;">
<main style="max-width: 560px; margin: 0 auto; background: #1e293b; border: 1px solid #334155; border-radius: 8px; padding: 24px;">
<h1 style="font-size: 20px; margin: 0 0 16px;">{{.Title}}</h1>
<p style="line-height: 1.5;">{{.Text}}</p>
{{if .Confirm}}<form method="post"><button type="submit" style="background: #2563eb; color: #fff; border: 0; border-radius: 6px; padding: 10px 16px; font-size: 15px;">Stop these emails</button></form>{{end}}
</main>
</body>
</html>
`))

// unsubscribeView is what the page shows.
type unsubscribeView struct {
	Title, Text string
	// Confirm shows the button, which posts to the page's own URL.
	Confirm bool
}

func writeUnsubscribePage(w http.ResponseWriter, status int, v unsubscribeView) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Robots-Tag", "noindex, nofollow")
	h.Set("Referrer-Policy", "no-referrer") // the URL is a capability
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = unsubscribeTemplate.Execute(w, v)
}

// unsubscribeLink checks the link's query (account, event, sig) and
// returns its account and event; otherwise it has answered the page that
// says what is wrong.
func (s *Server) unsubscribeLink(w http.ResponseWriter, r *http.Request) (*store.Account, string, bool) {
	fail := func(status int, text string) (*store.Account, string, bool) {
		writeUnsubscribePage(w, status, unsubscribeView{Title: "This link does not work", Text: text})
		return nil, "", false
	}
	if s.cfg.Webhooks == nil {
		return fail(http.StatusServiceUnavailable, "Unsubscribe links are not configured here (LEVQOR_WEBHOOK_SECRET_KEY). Change your notification preferences in the API instead.")
	}
	q := r.URL.Query()
	acc, event, sig := q.Get("account"), q.Get("event"), q.Get("sig")
	if acc == "" || event == "" || sig == "" {
		return fail(http.StatusBadRequest, "The link is incomplete: it needs its account, event and sig, exactly as the email gave them.")
	}
	if !s.cfg.Webhooks.Key().CheckUnsubscribe(acc, event, sig) {
		s.failures.allow(s.clientAddr(r), s.now())
		return fail(http.StatusForbidden, "The link's signature does not match: copy the whole link from the email.")
	}
	if !notify.Mutable(event) {
		return fail(http.StatusBadRequest, "Emails about "+event+" cannot be stopped: they warn before something irreversible happens.")
	}
	if ok, _ := s.limiter.allow("unsubscribe:"+acc, s.now()); !ok {
		w.Header().Set("Retry-After", "1")
		return fail(http.StatusTooManyRequests, "Too many requests for this account; try again in a moment.")
	}
	a, err := s.store.GetAccount(r.Context(), acc)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fail(http.StatusNotFound, "The account this link is for no longer exists.")
	case err != nil:
		s.log.WithError(err).Error("unsubscribe: cannot read the account")
		w.Header().Set("Retry-After", "5")
		return fail(http.StatusServiceUnavailable, "The account cannot be read just now; try again in a moment.")
	}
	return a, event, true
}

// unsubscribePage serves GET /unsubscribe: what the link would stop, and
// a button that stops it.
func (s *Server) unsubscribePage(w http.ResponseWriter, r *http.Request) {
	acc, event, ok := s.unsubscribeLink(w, r)
	if !ok {
		return
	}
	writeUnsubscribePage(w, http.StatusOK, unsubscribeView{
		Title:   "Stop emails about " + event + "?",
		Text:    "Levqor will no longer email " + acc.Name + " about " + event + ". Other notifications, and your webhook endpoints, are not affected.",
		Confirm: true,
	})
}

// unsubscribe serves POST /unsubscribe: a notifications.unsubscribe
// command for the link's account, waited for, so that the page says it is
// done.
func (s *Server) unsubscribe(w http.ResponseWriter, r *http.Request) {
	acc, event, ok := s.unsubscribeLink(w, r)
	if !ok {
		return
	}
	if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, unsubscribeBodyMax)); err != nil {
		writeUnsubscribePage(w, http.StatusRequestEntityTooLarge, unsubscribeView{Title: "This request is too large", Text: "An unsubscribe request carries at most 1 KiB."})
		return
	}
	// The link is the authority for this one command on this one account.
	r = r.WithContext(auth.WithPrincipal(r.Context(), auth.Principal{AccountID: acc.ID}))
	cmd, wt, ok := s.queue(w, r, submission{
		domain: notify.Domain, action: notify.ActionUnsubscribe, accountID: acc.ID,
		params: notify.UnsubscribeParams{Event: event}, wait: unsubscribeWait,
	})
	if !ok {
		return
	}
	defer wt.close()
	final, err := s.await(r.Context(), wt, cmd.ID, unsubscribeWait)
	switch {
	case err != nil:
		s.log.WithError(err).WithField("command_id", cmd.ID).Warn("unsubscribe: cannot read the command")
		final = cmd
	case final.Status == store.CommandFailed:
		text := "The request failed"
		if final.Error != nil {
			text += ": " + final.Error.Message
		}
		writeUnsubscribePage(w, http.StatusConflict, unsubscribeView{Title: "Not unsubscribed", Text: text + "."})
		return
	}
	view := unsubscribeView{Title: "Unsubscribed", Text: "Levqor will no longer email " + acc.Name + " about " + event + ". You can undo this in your notification preferences."}
	status := http.StatusOK
	if final.Pending() {
		view.Text = "Your request is recorded: Levqor will stop emailing " + acc.Name + " about " + event + " in a moment."
		status = http.StatusAccepted
	}
	writeUnsubscribePage(w, status, view)
}
