package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/people"
	"github.com/levqor/levqor/pkg/store"
)

// People and API keys are not in the product API: the console reads and
// changes them in the store, always within the owner's own account.

func (c *Console) ownerRoutes() {
	c.mux.Handle("GET "+Path+"people", c.signedIn(ownersOnly, c.peoplePage))
	c.mux.Handle("POST "+Path+"people/invite", c.signedIn(ownersOnly, c.invitePerson))
	c.mux.Handle("POST "+Path+"people/{id}/disable", c.signedIn(ownersOnly, c.disablePerson))
	c.mux.Handle("POST "+Path+"invitations/{hash}/revoke", c.signedIn(ownersOnly, c.revokeInvitation))
	c.mux.Handle("GET "+Path+"keys", c.signedIn(ownersOnly, c.keysPage))
	c.mux.Handle("POST "+Path+"keys", c.signedIn(ownersOnly, c.createKey))
	c.mux.Handle("POST "+Path+"keys/{id}/revoke", c.signedIn(ownersOnly, c.revokeKey))
}

func (c *Console) peoplePage(w http.ResponseWriter, r *http.Request, v *viewer) {
	c.renderPeople(w, r, v, http.StatusOK, map[string]any{"Notice": r.URL.Query().Get("done")})
}

func (c *Console) renderPeople(w http.ResponseWriter, r *http.Request, v *viewer, status int, data map[string]any) {
	users, err := c.store.ListUsers(r.Context(), v.User.AccountID, false)
	if err != nil {
		c.fail(w, r, err, http.StatusServiceUnavailable, "The console cannot reach its database; try again shortly.")
		return
	}
	invites, err := c.store.PendingInvitations(r.Context(), v.User.AccountID, time.Now())
	if err != nil {
		c.fail(w, r, err, http.StatusServiceUnavailable, "The console cannot reach its database; try again shortly.")
		return
	}
	data["Users"], data["Invites"] = users, invites
	c.render(w, r, v, status, "people", data)
}

// invitePerson makes an invitation to the owner's account and emails its
// link; without a mail server the owner is shown the link to pass on.
func (c *Console) invitePerson(w http.ResponseWriter, r *http.Request, v *viewer) {
	email, role := strings.TrimSpace(r.PostFormValue("email")), r.PostFormValue("role")
	form := map[string]any{"Email": email, "Role": role}
	if role != store.RoleOwner && role != store.RoleMember {
		form["Field"], form["Message"] = "role", "Role: owner or member."
		c.renderPeople(w, r, v, http.StatusUnprocessableEntity, form)
		return
	}
	if msg, suspended := v.suspended(); suspended {
		form["Message"] = msg
		c.renderPeople(w, r, v, http.StatusForbidden, form)
		return
	}
	secret, l, err := c.people.Invite(r.Context(), email, role, v.User.AccountID, "user:"+v.User.ID)
	var fe *people.FieldError
	if errors.As(err, &fe) {
		form["Field"], form["Message"] = fe.Field, fieldLabel(fe.Field)+": "+fe.Message+"."
		c.renderPeople(w, r, v, http.StatusUnprocessableEntity, form)
		return
	}
	if err != nil {
		c.fail(w, r, err, http.StatusServiceUnavailable, "The invitation could not be made now; try again shortly.")
		return
	}
	c.audit(r.Context(), v, ops.ActionUserInvite, map[string]any{"role": l.Role, "account_id": l.AccountID})
	base, ok := c.emailBase(r)
	link := base + Path + "invite/" + url.PathEscape(secret)
	if !ok {
		// No LEVQOR_PUBLIC_URL: the owner passes the link on, on their host.
		c.renderPeople(w, r, v, http.StatusOK, map[string]any{"Link": c.publicURL(r) + Path + "invite/" + url.PathEscape(secret), "LinkFor": l.Email})
		return
	}
	name := v.User.Name
	if name == "" {
		name = v.User.Email
	}
	body := fmt.Sprintf("%s invites you to their account on Levqor, as %s.\n\nChoose your name and password here (the link works once, until %s):\n\n%s\n",
		name, l.Role, l.ExpiresAt.Format("2 January 2006 15:04 UTC"), link)
	if err := c.mail(r.Context(), l.Email, "Your invitation to Levqor", body); err != nil {
		c.log.WithFields(logrus.Fields{"error": err.Error(), "user_id": v.User.ID}).Warn("invitation email not sent; the link is shown to the owner")
		c.renderPeople(w, r, v, http.StatusOK, map[string]any{"Link": link, "LinkFor": l.Email})
		return
	}
	http.Redirect(w, r, Path+"people?done="+url.QueryEscape("Invitation sent to "+l.Email), http.StatusSeeOther)
}

// disablePerson disables a user of the owner's account (not themselves).
func (c *Console) disablePerson(w http.ResponseWriter, r *http.Request, v *viewer) {
	u, err := c.store.UserByID(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.AccountID != v.User.AccountID) {
		c.fail(w, r, nil, http.StatusNotFound, "There is nothing here.")
		return
	}
	if err != nil {
		c.fail(w, r, err, http.StatusServiceUnavailable, "The console cannot reach its database; try again shortly.")
		return
	}
	if u.ID == v.User.ID {
		c.renderPeople(w, r, v, http.StatusUnprocessableEntity, map[string]any{"Message": "You cannot disable yourself; another owner can."})
		return
	}
	if _, err := c.store.DisableUser(r.Context(), u.ID, time.Time{}); err != nil {
		c.fail(w, r, err, http.StatusServiceUnavailable, "The user could not be disabled now; try again shortly.")
		return
	}
	c.audit(r.Context(), v, ops.ActionUserDisable, map[string]any{"user_id": u.ID})
	http.Redirect(w, r, Path+"people?done="+url.QueryEscape("Disabled "+u.Email), http.StatusSeeOther)
}

// revokeInvitation deletes a pending invitation of the owner's account:
// its link stops working. Invitations are named by the hash of their
// secret, which opens nothing.
func (c *Console) revokeInvitation(w http.ResponseWriter, r *http.Request, v *viewer) {
	ok, err := c.store.RevokeInvitation(r.Context(), v.User.AccountID, r.PathValue("hash"))
	if err != nil {
		c.fail(w, r, err, http.StatusServiceUnavailable, "The console cannot reach its database; try again shortly.")
		return
	}
	if !ok {
		c.fail(w, r, nil, http.StatusNotFound, "There is nothing here.")
		return
	}
	c.audit(r.Context(), v, ops.ActionUserInviteRevoke, map[string]any{"account_id": v.User.AccountID})
	http.Redirect(w, r, Path+"people?done="+url.QueryEscape("Invitation revoked"), http.StatusSeeOther)
}

func (c *Console) keysPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	c.renderKeys(w, r, v, http.StatusOK, map[string]any{"Notice": r.URL.Query().Get("done")})
}

func (c *Console) renderKeys(w http.ResponseWriter, r *http.Request, v *viewer, status int, data map[string]any) {
	keys, err := c.store.ListAPIKeys(r.Context(), store.ListAPIKeysParams{AccountID: v.User.AccountID})
	if err != nil {
		c.fail(w, r, err, http.StatusServiceUnavailable, "The console cannot reach its database; try again shortly.")
		return
	}
	data["Keys"] = keys
	c.render(w, r, v, status, "keys", data)
}

// createKey makes an API key for the owner's account and shows it once.
func (c *Console) createKey(w http.ResponseWriter, r *http.Request, v *viewer) {
	name := strings.TrimSpace(r.PostFormValue("name"))
	if name == "" || len(name) > 200 {
		c.renderKeys(w, r, v, http.StatusUnprocessableEntity, map[string]any{"Field": "name", "Message": "Name: say who or what uses the key (at most 200 characters)."})
		return
	}
	if msg, suspended := v.suspended(); suspended {
		c.renderKeys(w, r, v, http.StatusForbidden, map[string]any{"Message": msg})
		return
	}
	k, err := auth.GenerateKey()
	if err == nil {
		err = c.store.CreateAPIKey(r.Context(), store.APIKey{ID: k.ID, Hash: k.Hash, Prefix: k.Prefix, Name: name, AccountID: v.User.AccountID})
	}
	if err != nil {
		c.fail(w, r, err, http.StatusServiceUnavailable, "The key could not be made now; try again shortly.")
		return
	}
	c.audit(r.Context(), v, ops.ActionAPIKeyCreate, map[string]any{"key_id": k.ID, "account_id": v.User.AccountID, "name": name})
	c.renderKeys(w, r, v, http.StatusCreated, map[string]any{"Secret": k.Secret, "SecretName": name})
}

func (c *Console) revokeKey(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := r.PathValue("id")
	keys, err := c.store.ListAPIKeys(r.Context(), store.ListAPIKeysParams{AccountID: v.User.AccountID})
	if err != nil {
		c.fail(w, r, err, http.StatusServiceUnavailable, "The console cannot reach its database; try again shortly.")
		return
	}
	mine := false
	for _, k := range keys {
		mine = mine || k.ID == id
	}
	if !mine || !command.ValidID(id, "key_") {
		c.fail(w, r, nil, http.StatusNotFound, "There is nothing here.")
		return
	}
	if _, err := c.store.RevokeAPIKey(r.Context(), id, time.Time{}); err != nil {
		c.fail(w, r, err, http.StatusServiceUnavailable, "The key could not be revoked now; try again shortly.")
		return
	}
	c.audit(r.Context(), v, ops.ActionAPIKeyRevoke, map[string]any{"key_id": id})
	http.Redirect(w, r, Path+"keys?done="+url.QueryEscape("Revoked "+id), http.StatusSeeOther)
}

// audit records a person's change in the audit trail; a failure to
// record is logged (the change is made).
func (c *Console) audit(ctx context.Context, v *viewer, action string, params map[string]any) {
	if err := ops.Audit(ctx, c.store, c.log, time.Now(), v.principal().Actor(), action, params, map[string]any{}, store.AuditOutcomeOK); err != nil {
		c.log.WithFields(logrus.Fields{"error": err.Error(), "action": action}).Error("could not record a console action in the audit trail")
	}
}

// mail sends a message to one person through the configured mailer.
func (c *Console) mail(ctx context.Context, to, subject, body string) error {
	if c.cfg.Mailer == nil {
		return errors.New("no mailer configured (LEVQOR_SMTP_HOST or LEVQOR_MAIL_DIR)")
	}
	id, err := command.NewID("ntf_")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return c.cfg.Mailer.Send(ctx, &store.Notification{ID: id, Recipient: to, Subject: subject, BodyText: body, Event: "console.email", CreatedAt: time.Now().UTC()})
}
