package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/stripeevent"
)

// StripeEventRetention is how far back Stripe lists events.
const StripeEventRetention = 30 * 24 * time.Hour

const (
	stripePageSize   = 100
	stripeMaxPages   = 2000 // 200,000 events: far beyond 30 days of any account here
	stripeMaxBody    = 32 << 20
	stripeUserAgent  = "levqor-backfill"
	stripeMaxRetries = 4
)

// BackfillRequest asks Backfill to catch up on Stripe events created since
// Since.
type BackfillRequest struct {
	// Since is the oldest creation time to list; required. Stripe keeps 30
	// days of events: an older Since is moved forward to that limit.
	Since time.Time `json:"since"`
	// DryRun lists and compares with the ledger, and publishes nothing.
	DryRun bool `json:"dry_run"`
}

// Backfill item statuses.
const (
	BackfillRecorded     = "recorded"
	BackfillPublished    = "published"
	BackfillInStream     = "in_stream"
	BackfillWouldPublish = "would_publish"
	BackfillInvalid      = "invalid"
	BackfillFailed       = "failed"
)

// BackfillItem is what happened to one listed event.
type BackfillItem struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	Created time.Time `json:"created"`
	Status  string    `json:"status"`
	Seq     uint64    `json:"seq,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// BackfillResult reports a backfill.
type BackfillResult struct {
	// Since is the start actually used; Clamped says it was moved forward
	// to Stripe's 30-day limit.
	Since   time.Time `json:"since"`
	Clamped bool      `json:"clamped"`
	DryRun  bool      `json:"dry_run"`
	// Listed counts events Stripe returned; Recorded those the ledger
	// already holds (skipped); Published those now on the STRIPE stream;
	// InStream those JetStream already had (published but not yet
	// recorded: the workers will get to them); Invalid those that are not
	// events Levqor can route; Failed those whose publish failed. In a dry
	// run Published counts what would be published.
	Listed    int `json:"listed"`
	Recorded  int `json:"recorded"`
	Published int `json:"published"`
	InStream  int `json:"in_stream"`
	Invalid   int `json:"invalid"`
	Failed    int `json:"failed"`
	// Items lists every event not already recorded (the first 1000).
	Items []BackfillItem `json:"items"`
}

func (r *BackfillResult) counts() map[string]int {
	return map[string]int{
		"listed": r.Listed, "recorded": r.Recorded, "published": r.Published,
		"in_stream": r.InStream, "invalid": r.Invalid, "failed": r.Failed,
	}
}

// listedEvent is one event from Stripe's list, with its bytes.
type listedEvent struct {
	env stripeevent.Envelope
	raw []byte
	err error
}

// Backfill lists the Stripe events created since req.Since from the Stripe
// API (every page), and publishes to the STRIPE stream, oldest first, each
// one the ledger has never recorded, with its event id as dedupe id, as
// ingest does for a webhook. It is for when webhooks were down longer than
// Stripe retries them.
func (o *Ops) Backfill(ctx context.Context, actor string, req BackfillRequest, progress Progress) (*BackfillResult, error) {
	now := o.now().UTC()
	if req.Since.IsZero() {
		return nil, invalid("since", "required: list events created since when")
	}
	if req.Since.After(now) {
		return nil, invalid("since", "is in the future")
	}
	if o.set.Stripe.SecretKey == "" {
		return nil, fmt.Errorf("backfill needs a Stripe API key able to read events: set %s", StripeAPIKeyEnv)
	}
	if o.set.BusKey == nil && !req.DryRun {
		return nil, errors.New("backfill needs LEVQOR_BUS_KEY, the key ingest proves Stripe events with: the billing worker refuses events without the proof")
	}
	res := &BackfillResult{Since: req.Since.UTC(), DryRun: req.DryRun, Items: []BackfillItem{}}
	if limit := now.Add(-StripeEventRetention); res.Since.Before(limit) {
		res.Since, res.Clamped = limit.Truncate(time.Second).Add(time.Second), true
	}

	events, err := o.listStripeEvents(ctx, res.Since)
	if err != nil {
		return nil, err
	}
	res.Listed = len(events)
	// Stripe lists newest first; the stream should hold them oldest first.
	slices.Reverse(events)
	var ids []string
	for _, e := range events {
		if e.err == nil {
			ids = append(ids, e.env.ID)
		}
	}
	known, err := o.store.KnownStripeEventIDs(ctx, ids)
	if err != nil {
		return nil, err
	}
	corr := "backfill-" + randomHex(8)
	for i, e := range events {
		it := BackfillItem{ID: e.env.ID, Type: e.env.Type, Created: time.Unix(e.env.Created, 0).UTC()}
		switch {
		case e.err != nil:
			it.Status, it.Error = BackfillInvalid, e.err.Error()
			res.Invalid++
		case known[e.env.ID]:
			res.Recorded++
			progress.report(i+1, len(events))
			continue
		case req.DryRun:
			it.Status = BackfillWouldPublish
			res.Published++
		default:
			// Listed from the Stripe API itself: as trustworthy as a
			// verified webhook, and proved by the publisher as those are.
			pr, err := o.pub.Publish(ctx, o.topo.Subject(bus.Stripe, e.env.Type), e.env.ID, nats.Header{bus.HeaderCorrelationID: {corr}}, e.raw)
			switch {
			case err != nil:
				it.Status, it.Error = BackfillFailed, err.Error()
				res.Failed++
			case pr.Duplicate:
				it.Status, it.Seq = BackfillInStream, pr.Seq
				res.InStream++
			default:
				it.Status, it.Seq = BackfillPublished, pr.Seq
				res.Published++
			}
		}
		if len(res.Items) < maxItems {
			res.Items = append(res.Items, it)
		}
		progress.report(i+1, len(events))
	}
	params := map[string]any{"since": res.Since, "requested_since": req.Since.UTC(), "dry_run": req.DryRun}
	ok := res.Published + res.InStream + res.Recorded
	if err := o.audit(ctx, actor, ActionStripeBackfill, params, res.counts(), outcomeOf(req.DryRun, ok, res.Failed)); err != nil {
		return res, err
	}
	return res, nil
}

// stripeList is a page of Stripe's list API.
type stripeList struct {
	Data    []json.RawMessage `json:"data"`
	HasMore bool              `json:"has_more"`
}

// listStripeEvents pages through GET /v1/events created since since.
func (o *Ops) listStripeEvents(ctx context.Context, since time.Time) ([]listedEvent, error) {
	var out []listedEvent
	seen := map[string]bool{}
	after := ""
	for page := 0; ; page++ {
		if page == stripeMaxPages {
			return nil, fmt.Errorf("stripe: more than %d pages of events; narrow --since", stripeMaxPages)
		}
		q := url.Values{}
		q.Set("limit", strconv.Itoa(stripePageSize))
		q.Set("created[gte]", strconv.FormatInt(since.Unix(), 10))
		if after != "" {
			q.Set("starting_after", after)
		}
		var list stripeList
		if err := o.stripeGet(ctx, "/v1/events?"+q.Encode(), &list); err != nil {
			return nil, err
		}
		last := ""
		for _, raw := range list.Data {
			var compact bytes.Buffer
			if err := json.Compact(&compact, raw); err != nil {
				return nil, fmt.Errorf("stripe: listing events: malformed event in page %d: %w", page+1, err)
			}
			b := compact.Bytes()
			env, _, err := stripeevent.Parse(b)
			if env.ID != "" {
				last = env.ID
				if seen[env.ID] {
					continue
				}
				seen[env.ID] = true
			}
			out = append(out, listedEvent{env: env, raw: b, err: err})
		}
		if !list.HasMore {
			return out, nil
		}
		if last == "" || last == after {
			return nil, errors.New("stripe: listing events: has_more without a new last event id; stopping")
		}
		after = last
	}
}

// stripeError is Stripe's error body.
type stripeError struct {
	Error struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// stripeGet GETs path from the Stripe API into v, retrying 429 and 5xx
// answers and network errors with backoff.
func (o *Ops) stripeGet(ctx context.Context, path string, v any) error {
	b := backoff.WithContext(backoff.WithMaxRetries(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(500*time.Millisecond), backoff.WithMaxInterval(5*time.Second)), stripeMaxRetries), ctx)
	return backoff.Retry(func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.set.Stripe.BaseURL+path, nil)
		if err != nil {
			return backoff.Permanent(fmt.Errorf("stripe: %w", err))
		}
		req.Header.Set("Authorization", "Bearer "+o.set.Stripe.SecretKey)
		req.Header.Set("User-Agent", stripeUserAgent)
		resp, err := o.http.Do(req)
		if err != nil {
			return fmt.Errorf("stripe: listing events: %w", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, stripeMaxBody))
		if err != nil {
			return fmt.Errorf("stripe: listing events: reading answer: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			var se stripeError
			_ = json.Unmarshal(body, &se)
			msg := se.Error.Message
			if msg == "" {
				msg = http.StatusText(resp.StatusCode)
			}
			err := fmt.Errorf("stripe: listing events: %d %s", resp.StatusCode, msg)
			if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
				return err
			}
			return backoff.Permanent(err)
		}
		if err := json.Unmarshal(body, v); err != nil {
			return backoff.Permanent(fmt.Errorf("stripe: listing events: answer is not a list: %w", err))
		}
		return nil
	}, b)
}
