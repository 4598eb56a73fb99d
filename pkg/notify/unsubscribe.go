package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/store"
)

// An email to a customer about an event the account may mute carries a
// link that mutes it: LEVQOR_PUBLIC_URL/unsubscribe?account=…&event=…&sig=…
// (and the List-Unsubscribe headers of RFC 2369 and RFC 8058, so a mail
// client offers it as a button). The link needs no sign-in: sig, a MAC
// under LEVQOR_WEBHOOK_SECRET_KEY of the account and the event, is what
// lets whoever holds the email mute that event for that account, and
// nothing else.

// UnsubscribePath is the route of unsubscribe links, served by ingest.
const UnsubscribePath = "/unsubscribe"

// unsubscribeSigBytes is how much of the MAC a link carries: 96 bits.
const unsubscribeSigBytes = 12

// ActionUnsubscribe mutes one event of an account's emails: what an
// unsubscribe link asks.
const ActionUnsubscribe = "unsubscribe"

// UnsubscribeParams are the parameters of notifications.unsubscribe.
type UnsubscribeParams struct {
	// Event is the event muted.
	Event string `json:"event"`
}

func (k *WebhookKey) unsubscribeMAC(accountID, event string) []byte {
	m := hmac.New(sha256.New, k.key)
	for _, part := range []string{"levqor unsubscribe", accountID, event} {
		m.Write([]byte(strconv.Itoa(len(part))))
		m.Write([]byte{':'})
		m.Write([]byte(part))
	}
	return m.Sum(nil)[:unsubscribeSigBytes]
}

// UnsubscribeURL is the link under publicURL that mutes event for
// accountID.
func (k *WebhookKey) UnsubscribeURL(publicURL, accountID, event string) string {
	q := url.Values{"account": {accountID}, "event": {event}, "sig": {hex.EncodeToString(k.unsubscribeMAC(accountID, event))}}
	return strings.TrimRight(publicURL, "/") + UnsubscribePath + "?" + q.Encode()
}

// CheckUnsubscribe reports whether sig is the signature of an unsubscribe
// link for accountID and event.
func (k *WebhookKey) CheckUnsubscribe(accountID, event, sig string) bool {
	got, err := hex.DecodeString(sig)
	return err == nil && hmac.Equal(got, k.unsubscribeMAC(accountID, event))
}

// Mutable reports whether an account may mute event: one Levqor sends,
// and not mandatory.
func Mutable(event string) bool {
	return slices.Contains(events.Names(), events.Name(event)) && !slices.Contains(Mandatory, events.Name(event))
}

// unsubscribeURL is the link that stops the customer's emails about
// event, or "" when there is none: staff are not unsubscribed by a link,
// mandatory events cannot be muted, and links need the key and a public
// URL.
func (w *Worker) unsubscribeURL(audience, channel, accountID, event string) string {
	if audience != store.AudienceCustomer || channel != ChannelEmail || accountID == "" || w.PublicURL == "" ||
		w.Webhooks == nil || !Mutable(event) {
		return ""
	}
	return w.Webhooks.cfg.Key.UnsubscribeURL(w.PublicURL, accountID, event)
}

// unsubscribe carries out notifications.unsubscribe: event joins the
// account's muted events, the rest of its preferences unchanged.
func (w *Worker) unsubscribe(_ context.Context, e *command.Envelope, p UnsubscribeParams) (command.Effect, error) {
	switch {
	case e.AccountID == "":
		return nil, invalid("account_id", "account_id is required: the account to unsubscribe")
	case !Mutable(p.Event):
		return nil, invalid("event", fmt.Sprintf("%q is not an event the account can mute", p.Event))
	}
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		if _, err := tx.GetAccount(ctx, e.AccountID); errors.Is(err, store.ErrNotFound) {
			return command.Outcome{}, command.Fail(http.StatusNotFound, "not_found", "account_id", "no account "+e.AccountID)
		} else if err != nil {
			return command.Outcome{}, err
		}
		prefs, err := tx.GetPreferences(ctx, e.AccountID)
		if err != nil {
			return command.Outcome{}, err
		}
		if !slices.Contains(prefs.Muted, p.Event) {
			prefs.Muted = append(prefs.Muted, p.Event)
			slices.Sort(prefs.Muted)
			prefs.UpdatedAt = w.now()
		}
		return putPreferences(ctx, tx, prefs)
	}, nil
}
