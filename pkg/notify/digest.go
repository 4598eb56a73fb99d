package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/store"
)

// A burst is one event told to one recipient again and again: a hundred
// failed runs in five minutes. The first notification of a burst goes out
// at once; those that follow it within the digest window
// (LEVQOR_NOTIFY_DIGEST_WINDOW) are held, and one digest tells them all
// when the window after the first held one ends. A burst that goes on
// makes one digest a window; a recipient hears nothing more once the
// notifications stop. Webhook endpoints get every event, never a digest.

// DigestWindowDefault is the digest window: how close together the
// notifications of a burst come.
const DigestWindowDefault = 5 * time.Minute

// DigestListMax is the most notifications a digest lists one by one; it
// counts the rest.
const DigestListMax = 50

// DigestIncidentPrefix starts the incident of every digest.
const DigestIncidentPrefix = "digest:"

func burstOf(n store.Notification) store.BurstKey {
	return store.BurstKey{AccountID: n.AccountID, Channel: n.Channel, Recipient: n.Recipient, Event: n.Event}
}

// burst finds whether n, about to go out, belongs to a burst: if a
// notification of its burst was recorded within the digest window, it
// returns the digest n is to be held for: the burst's open one (locked),
// or a new one, which the caller records once n is (opening).
func (w *Worker) burst(ctx context.Context, tx *store.Tx, n store.Notification) (digest *store.Notification, opening bool, err error) {
	if w.DigestWindow <= 0 || n.Channel == ChannelWebhook {
		return nil, false, nil
	}
	k := burstOf(n)
	recent, err := tx.RecentlyTold(ctx, k, n.CreatedAt.Add(-w.DigestWindow))
	if err != nil || !recent {
		return nil, false, err
	}
	digest, err = tx.OpenDigest(ctx, k)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, false, err
	case digest.NotBefore == nil || n.CreatedAt.Before(digest.NotBefore.Add(w.DigestWindow)):
		return digest, false, nil
	default:
		// Due a window ago and still open: its delivery was lost (dead-
		// lettered before it could go). It is closed and queued again
		// here, and n opens the next digest, rather than the burst
		// gathering in a digest nobody sends.
		if closed, err := w.closeDigestTx(ctx, tx, digest); err != nil || !closed {
			return nil, false, err
		}
		if err := w.enqueueDelivery(ctx, tx, digest, ""); err != nil {
			return nil, false, err
		}
	}
	id, err := command.NewID(NotificationIDPrefix)
	if err != nil {
		return nil, false, err
	}
	due := n.CreatedAt.Add(w.DigestWindow).UTC().Truncate(time.Microsecond)
	return &store.Notification{
		ID: id, AccountID: n.AccountID, Event: n.Event, EventID: n.EventID, Incident: DigestIncidentPrefix + id,
		Channel: n.Channel, Recipient: n.Recipient, Audience: n.Audience,
		Subject: "Digest of " + n.Event, Status: store.NotificationPending, CreatedAt: n.CreatedAt,
		DigestState: store.DigestOpen, NotBefore: &due, UnsubscribeURL: n.UnsubscribeURL,
	}, true, nil
}

// staleDigestBatch bounds the stale digests one sweep sends.
const staleDigestBatch = 500

// sendStaleDigests closes and queues again the digests still open a
// window after they were due, whose delivery was lost (dead-lettered
// before it could go): a burst that ended with them would otherwise never
// be told. A burst that goes on does the same for its own (see burst);
// this catches those that did not. notify.prune runs it daily.
func (w *Worker) sendStaleDigests(ctx context.Context, now time.Time) error {
	window := w.DigestWindow
	if window <= 0 {
		window = DigestWindowDefault
	}
	stale, err := w.Store.StaleDigests(ctx, now.Add(-window), staleDigestBatch)
	if err != nil {
		return err
	}
	for i := range stale {
		d := &stale[i]
		if err := w.Store.InTx(ctx, func(tx *store.Tx) error {
			if closed, err := w.closeDigestTx(ctx, tx, d); err != nil || !closed {
				return err
			}
			return w.enqueueDelivery(ctx, tx, d, "")
		}); err != nil {
			return err
		}
		bus.Logger(ctx).WithFields(logrus.Fields{"digest_id": d.ID, "due": d.NotBefore.Format(time.RFC3339)}).Warn("a digest's delivery was lost; queued again")
	}
	return nil
}

// closeDigest closes the open digest d, renders it from the
// notifications it tells and returns it as it now stands; a digest
// already closed (by an earlier delivery of the same message) is returned
// as it is.
func (w *Worker) closeDigest(ctx context.Context, d *store.Notification) (*store.Notification, error) {
	if err := w.Store.InTx(ctx, func(tx *store.Tx) error {
		_, err := w.closeDigestTx(ctx, tx, d)
		return err
	}); err != nil {
		return nil, err
	}
	return w.Store.GetNotification(ctx, d.ID)
}

// closeDigestTx closes and renders the open digest d within tx, and
// reports whether it did: false when it was closed already.
func (w *Worker) closeDigestTx(ctx context.Context, tx *store.Tx, d *store.Notification) (bool, error) {
	members, closed, err := tx.CloseDigest(ctx, d.ID, w.now())
	if err != nil || !closed {
		return false, err
	}
	name := ""
	if d.AccountID != "" && d.Audience == store.AudienceCustomer {
		a, err := tx.GetAccount(ctx, d.AccountID)
		switch {
		case err == nil:
			name = a.Name
		case !errors.Is(err, store.ErrNotFound):
			return false, err
		}
	}
	msg, err := renderDigest(d.Event, members, name, w.PublicURL, d.UnsubscribeURL)
	if err != nil {
		return false, fmt.Errorf("closing digest %s: %w", d.ID, err)
	}
	return true, tx.SetNotificationMessage(ctx, d.ID, msg.Subject, msg.Text, msg.HTML, w.now())
}

// renderDigest renders the digest of members, notifications of event,
// for the account named name ("" for staff).
func renderDigest(event string, members []store.Notification, name, publicURL, unsubscribe string) (Message, error) {
	if len(members) == 0 {
		return Message{}, errors.New("a digest tells no notification")
	}
	first := members[0].Subject
	subject := fmt.Sprintf("%s (%d more)", first, len(members))
	for _, m := range members[1:] {
		if m.Subject != first {
			subject = fmt.Sprintf("%d more notifications like %q", len(members), first)
			break
		}
	}
	var b strings.Builder
	if name != "" {
		fmt.Fprintf(&b, "Hello %s,\n\n", name)
	} else {
		b.WriteString("Hello,\n\n")
	}
	fmt.Fprintf(&b, "%d more notifications about %s came in soon after the last one we sent, so here they are together:\n\n", len(members), event)
	for i, m := range members {
		if i == DigestListMax {
			fmt.Fprintf(&b, "- and %d more\n", len(members)-DigestListMax)
			break
		}
		fmt.Fprintf(&b, "- %s: %s\n", m.CreatedAt.UTC().Format("2 January 2006, 15:04 UTC"), m.Subject)
	}
	link := ""
	if publicURL != "" {
		b.WriteString("\nEach is listed in full, with what happened, among the notifications:")
		link = strings.TrimRight(publicURL, "/") + "/v1/notifications"
	}
	return compose(subject, b.String(), link, event, unsubscribe)
}
