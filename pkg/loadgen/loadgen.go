// Package loadgen sends realistic, correctly signed Stripe webhooks to an
// ingest at a fixed rate or as fast as possible, and measures what a user of
// Levqor would: accepted webhooks per second, latency percentiles, status
// codes and, optionally, how long until each event's effect was committed.
//
// Events follow each simulated account's life (checkout, subscription
// created, invoices, updates), with a configurable share of duplicate
// deliveries (the same event id sent again) and out-of-order deliveries
// (adjacent events of one account swapped), as Stripe really sends them.
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/levqor/levqor/pkg/stripesim"
)

// Config describes one load run.
type Config struct {
	// URL of the ingest webhook endpoint.
	URL string
	// Secret signs the events.
	Secret string
	// Rate is requests per second; 0 sends as fast as the connections
	// allow.
	Rate float64
	// Connections is the number of concurrent senders (HTTP connections).
	Connections int
	// Count stops after this many requests; Duration after this long.
	// At least one must be set; whichever comes first ends the run.
	Count    int
	Duration time.Duration
	// Accounts is the number of simulated Stripe customers.
	Accounts int
	// Mix weighs the kinds of events: "subscription", "invoice",
	// "checkout". Missing kinds weigh 0; an empty mix is 4:4:1.
	Mix map[string]float64
	// Duplicates is the share of requests that resend an earlier event.
	Duplicates float64
	// OutOfOrder is the share of events sent after the account's next one.
	OutOfOrder float64
	// Seed makes a run reproducible; 0 picks one.
	Seed uint64
	// Prepare is how many events are generated and signed before the
	// clock starts, so that the timed run measures the server rather than
	// the generator sharing its CPU: 0 prepares what the run will need
	// (Count, or Rate × Duration) up to PrepareMax; a negative value
	// prepares none. Events beyond the prepared ones are generated while
	// sending, exactly as the prepared ones would have been.
	Prepare int
}

// PrepareMax bounds the events prepared ahead by default: about 6 KB each,
// so at most about 300 MB of the load generator's memory.
const PrepareMax = 50_000

// resignAfter is how old a prepared signature may get before the event is
// signed again at sending time: ingest accepts signatures up to five
// minutes old.
const resignAfter = 4 * time.Minute

// prepareCount is how many events Run prepares for c.
func (c Config) prepareCount() int {
	if c.Prepare < 0 {
		return 0
	}
	n := c.Prepare
	if n == 0 {
		n = PrepareMax
		if c.Count > 0 {
			n = min(n, c.Count)
		}
		if c.Rate > 0 && c.Duration > 0 {
			n = min(n, int(c.Rate*c.Duration.Seconds())+1)
		}
	}
	if c.Count > 0 {
		n = min(n, c.Count)
	}
	return n
}

// Validate reports the first problem with c, naming the flag.
func (c Config) Validate() error {
	switch {
	case c.URL == "":
		return errors.New("--url is required")
	case c.Secret == "":
		return errors.New("--secret is required (or STRIPE_WEBHOOK_SECRET)")
	case c.Connections < 1 || c.Connections > 4096:
		return errors.New("--connections: want 1 to 4096")
	case c.Count <= 0 && c.Duration <= 0:
		return errors.New("set --count or --duration")
	case c.Rate < 0:
		return errors.New("--rate must not be negative")
	case c.Accounts < 1:
		return errors.New("--accounts: want at least 1")
	case c.Duplicates < 0 || c.Duplicates > 0.9:
		return errors.New("--duplicates: want a share between 0 and 0.9")
	case c.OutOfOrder < 0 || c.OutOfOrder > 1:
		return errors.New("--out-of-order: want a share between 0 and 1")
	}
	for k, w := range c.Mix {
		if _, ok := kinds[k]; !ok || w < 0 {
			return fmt.Errorf("--mix: unknown kind %q or negative weight (kinds: subscription, invoice, checkout)", k)
		}
	}
	return nil
}

var kinds = map[string][]string{
	"subscription": {"customer.subscription.created", "customer.subscription.updated", "customer.subscription.updated", "customer.subscription.deleted"},
	"invoice":      {"invoice.paid", "invoice.payment_failed", "invoice.paid"},
	"checkout":     {"checkout.session.completed"},
}

// Latency summarises a set of durations.
type Latency struct {
	P50 time.Duration `json:"p50"`
	P90 time.Duration `json:"p90"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
}

func summarise(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return Latency{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: d[len(d)-1]}
}

// Report is the outcome of a run.
type Report struct {
	Sent       int            `json:"sent"`
	Accepted   int            `json:"accepted"`
	Duplicates int            `json:"duplicates_acknowledged"`
	Errors     int            `json:"transport_errors"`
	Status     map[string]int `json:"status"`
	Elapsed    time.Duration  `json:"elapsed"`
	// Throughput is accepted (2xx) requests per second.
	Throughput float64 `json:"throughput_per_second"`
	Latency    Latency `json:"latency"`
	// Unique lists every distinct event id acknowledged with 2xx, with the
	// time of its first acknowledgement (for end-to-end measurements).
	Unique map[string]time.Time `json:"-"`
	// Prepared is how many events were generated and signed before the
	// clock started.
	Prepared int `json:"prepared"`
	// CPUSeconds is the CPU time (user + system) the load generator itself
	// used during the timed run: on a shared machine it is the share the
	// server under test did not get. 0 where the platform does not say.
	CPUSeconds float64 `json:"cpu_seconds"`
}

// event is one planned delivery. Prepared events carry their signature;
// the others are signed when sent.
type event struct {
	id       string
	payload  []byte
	sig      string
	signedAt time.Time
}

// signature returns the Stripe-Signature header for ev: the prepared one
// while it is fresh, else a new one.
func (ev *event) signature(secret string) string {
	if ev.sig != "" && time.Since(ev.signedAt) < resignAfter {
		return ev.sig
	}
	return stripesim.Sign(ev.payload, secret, time.Now())
}

// generator plans events per account in life order.
type generator struct {
	mu       sync.Mutex
	rng      *rand.Rand
	cfg      Config
	weights  []string
	next     []int    // per account: index into its life
	late     []*event // events whose successor was sent first
	sent     []*event // ring of recent events for duplicates
	sentPos  int
	serial   int
	baseTime time.Time
}

func newGenerator(cfg Config) *generator {
	mix := cfg.Mix
	if len(mix) == 0 {
		mix = map[string]float64{"subscription": 4, "invoice": 4, "checkout": 1}
	}
	var weights []string
	for _, k := range []string{"subscription", "invoice", "checkout"} {
		for i := 0; i < int(mix[k]*10+0.5); i++ {
			weights = append(weights, k)
		}
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	return &generator{
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), cfg: cfg, weights: weights,
		next: make([]int, cfg.Accounts),
		sent: make([]*event, 0, 1024), baseTime: time.Now().Add(-time.Hour),
	}
}

// nextEvent returns the next delivery: a duplicate of an earlier event, an
// event that was held back so that its successor went first, or a fresh one.
func (g *generator) nextEvent() (*event, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := len(g.late); n > 0 {
		ev := g.late[n-1]
		g.late = g.late[:n-1]
		g.remember(ev)
		return ev, nil
	}
	if len(g.sent) > 0 && g.rng.Float64() < g.cfg.Duplicates {
		return g.sent[g.rng.IntN(len(g.sent))], nil
	}
	acct := g.rng.IntN(g.cfg.Accounts)
	ev, err := g.fresh(acct)
	if err != nil {
		return nil, err
	}
	if g.rng.Float64() < g.cfg.OutOfOrder {
		// Send the account's next event first; this one follows it.
		next, err := g.fresh(acct)
		if err != nil {
			return nil, err
		}
		g.late = append(g.late, ev)
		ev = next
	}
	g.remember(ev)
	return ev, nil
}

func (g *generator) remember(ev *event) {
	if len(g.sent) < cap(g.sent) {
		g.sent = append(g.sent, ev)
		return
	}
	g.sent[g.sentPos] = ev
	g.sentPos = (g.sentPos + 1) % len(g.sent)
}

func (g *generator) fresh(acct int) (*event, error) {
	kind := g.weights[g.rng.IntN(len(g.weights))]
	life := kinds[kind]
	typ := life[g.next[acct]%len(life)]
	g.next[acct]++
	g.serial++
	id := "evt_load" + strconv.FormatUint(g.rng.Uint64(), 36) + strconv.Itoa(g.serial)
	n := strconv.Itoa(acct)
	b, err := stripesim.NewEvent(typ, stripesim.EventOptions{
		ID:           id,
		Created:      g.baseTime.Add(time.Duration(g.serial) * time.Millisecond),
		Customer:     "cus_load" + n,
		Subscription: "sub_load" + n,
		AccountRef:   "acc_load" + n,
		Price:        "price_growth_monthly",
	})
	if err != nil {
		return nil, err
	}
	return &event{id: id, payload: b}, nil
}

// Run sends load until Count or Duration is reached or ctx ends. progress,
// when not nil, is called about once a second with the running totals.
func Run(ctx context.Context, cfg Config, progress func(Report)) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        cfg.Connections,
			MaxIdleConnsPerHost: cfg.Connections,
			MaxConnsPerHost:     cfg.Connections,
			IdleConnTimeout:     90 * time.Second,
		},
	}
	defer client.CloseIdleConnections()
	gen := newGenerator(cfg)
	// Prepared events come out of the same generator in the same order,
	// duplicates and out-of-order deliveries included: only when the
	// work is done changes.
	pool := make([]*event, cfg.prepareCount())
	now := time.Now()
	for i := range pool {
		ev, err := gen.nextEvent()
		if err != nil {
			return Report{}, err
		}
		if ev.sig == "" { // a duplicate is already signed
			ev.sig, ev.signedAt = stripesim.Sign(ev.payload, cfg.Secret, now), now
		}
		pool[i] = ev
	}
	var limiter *rate.Limiter
	if cfg.Rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	}

	var (
		mu        sync.Mutex
		rep       = Report{Status: map[string]int{}, Unique: map[string]time.Time{}, Prepared: len(pool)}
		latencies = make([]time.Duration, 0, max(1<<16, len(pool)))
		issued    int
	)
	// take returns the sequence number of the next request, or false when
	// Count is reached.
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if cfg.Count > 0 && issued >= cfg.Count {
			return 0, false
		}
		issued++
		return issued - 1, true
	}
	cpuStart := cpuTime()
	start := time.Now()
	stopProgress := make(chan struct{})
	if progress != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					mu.Lock()
					snap := Report{Sent: rep.Sent, Accepted: rep.Accepted, Errors: rep.Errors, Elapsed: time.Since(start)}
					mu.Unlock()
					snap.Throughput = float64(snap.Accepted) / snap.Elapsed.Seconds()
					progress(snap)
				}
			}
		}()
	}
	var wg sync.WaitGroup
	var genErr error
	var once sync.Once
	for i := 0; i < cfg.Connections; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for ctx.Err() == nil {
				seq, ok := take()
				if !ok {
					return
				}
				intended := time.Now()
				if limiter != nil {
					r := limiter.Reserve()
					delay := r.Delay()
					intended = intended.Add(delay)
					select {
					case <-ctx.Done():
						r.Cancel()
						return
					case <-time.After(delay):
					}
				}
				var ev *event
				if seq < len(pool) {
					ev = pool[seq]
				} else {
					var err error
					if ev, err = gen.nextEvent(); err != nil {
						once.Do(func() { genErr = err })
						return
					}
				}
				code, dup, err := send(ctx, client, cfg, ev, buf)
				// Measured from when the request should have left, so a
				// slow server cannot hide queueing (coordinated omission).
				lat := time.Since(intended)
				mu.Lock()
				rep.Sent++
				switch {
				case err != nil:
					if ctx.Err() == nil {
						rep.Errors++
					} else {
						rep.Sent--
					}
				default:
					rep.Status[strconv.Itoa(code)]++
					if code >= 200 && code < 300 {
						rep.Accepted++
						latencies = append(latencies, lat)
						if dup {
							rep.Duplicates++
						}
						if _, seen := rep.Unique[ev.id]; !seen {
							rep.Unique[ev.id] = time.Now()
						}
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stopProgress)
	rep.Elapsed = time.Since(start)
	if c := cpuTime(); c > 0 {
		rep.CPUSeconds = (c - cpuStart).Seconds()
	}
	if rep.Elapsed > 0 {
		rep.Throughput = float64(rep.Accepted) / rep.Elapsed.Seconds()
	}
	rep.Latency = summarise(latencies)
	return rep, genErr
}

var dupMarker = []byte(`"duplicate":true`)

// send posts ev and reports the status and whether ingest acknowledged it
// as a duplicate. buf is the sender's own buffer for the short answer; the
// rest of a longer one is drained so the connection is reused.
func send(ctx context.Context, c *http.Client, cfg Config, ev *event, buf []byte) (int, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL, bytes.NewReader(ev.payload))
	if err != nil {
		return 0, false, err
	}
	req.Header = http.Header{
		"Content-Type":     {"application/json; charset=utf-8"},
		"Stripe-Signature": {ev.signature(cfg.Secret)},
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, false, err
	}
	n, _ := io.ReadFull(resp.Body, buf)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, bytes.Contains(buf[:n], dupMarker), nil
}
