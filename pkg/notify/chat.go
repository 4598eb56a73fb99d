package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/store"
)

// ChatTimeoutDefault bounds one post to a chat webhook.
const ChatTimeoutDefault = 10 * time.Second

// chatResponseLimit is the most of a webhook's answer read (and thrown
// away) before the connection is reused.
const chatResponseLimit = 64 << 10

// Chat posts notifications to Slack-compatible incoming webhooks: a JSON
// body {"text": …} whose first line is the subject in bold. The webhook's
// URL is a secret (it holds the token that lets anyone post): errors name
// its host only.
type Chat struct {
	client *http.Client
}

// NewChat returns a chat sender whose posts time out after timeout
// (ChatTimeoutDefault when zero). Redirects are not followed: a webhook
// that redirects is misconfigured, and following it could take a post
// somewhere else.
func NewChat(timeout time.Duration) *Chat {
	if timeout <= 0 {
		timeout = ChatTimeoutDefault
	}
	return &Chat{client: &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Send posts n. A 4xx answer (but 429) is permanent: the webhook was
// revoked or the URL is wrong, and no retry will fix it.
func (c *Chat) Send(ctx context.Context, n *store.Notification) error {
	where := RedactURL(n.Recipient)
	body, err := json.Marshal(map[string]string{"text": chatText(n)})
	if err != nil {
		return bus.Permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.Recipient, bytes.NewReader(body))
	if err != nil {
		return bus.Permanent(fmt.Errorf("chat webhook %s: %w", where, errors.Unwrap(err)))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the url.Error's text would hold the secret URL
		}
		return fmt.Errorf("chat webhook %s: %w", where, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, chatResponseLimit))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("chat webhook %s answered %s", where, resp.Status)
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return bus.Permanent(fmt.Errorf("chat webhook %s answered %s: redirects are not followed", where, resp.Status))
	default:
		return bus.Permanent(fmt.Errorf("chat webhook %s answered %s", where, resp.Status))
	}
}

// chatText is the message as chat shows it: the subject in bold, then
// the text without its email signature. Both are escaped as Slack asks
// (&, <, >), so that names and reasons a customer chose cannot ping a
// channel (<!channel>) or disguise a link.
func chatText(n *store.Notification) string {
	text, _, _ := strings.Cut(n.BodyText, "\n-- \n")
	return "*" + chatEscape.Replace(n.Subject) + "*\n" + chatEscape.Replace(strings.TrimSpace(text))
}

var chatEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// RedactURL returns a webhook URL without what makes it a secret: its
// scheme and host, then "/…".
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(not a URL)"
	}
	return u.Scheme + "://" + u.Host + "/…"
}
