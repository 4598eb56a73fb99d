package bus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel/trace"

	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/telemetry"
)

// Handler handles one message. It returns nil once its effects are
// committed; see the package doc for what errors mean.
type Handler func(ctx context.Context, msg *Message) error

// Middleware wraps a handler, as net/http middleware wraps an http.Handler.
type Middleware func(Handler) Handler

// Failure describes a failed delivery, for operators ("what is stuck and
// why"). The router reports every failure to its FailureRecorder.
type Failure struct {
	Consumer     string
	MsgID        string
	Subject      string
	Stream       string
	StreamSeq    uint64
	Deliveries   int
	Error        string
	DeadLettered bool
	At           time.Time
	// AccountID is the message's Levqor-Account header; empty when it
	// names no account.
	AccountID string
}

// FailureRecorder stores failures where operators can see them.
type FailureRecorder interface {
	RecordFailure(ctx context.Context, f Failure) error
}

// Router defaults.
const (
	ConcurrencyDefault       = 8
	MaxDeliverDefault        = 5
	RetryAttemptsDefault     = 3
	RetryInitialDefault      = 50 * time.Millisecond
	RetryMaxDefault          = time.Second
	NakBaseDelayDefault      = 2 * time.Second
	NakMaxDelayDefault       = 5 * time.Minute
	FetchWaitDefault         = time.Second
	ShutdownTimeoutDefault   = 15 * time.Second
	HandlerTimeoutDefault    = 5 * time.Minute
	dlqReasonMaxBytes        = 1024
	failureRecordTimeout     = 3 * time.Second
	deadLetterPublishTimeout = 5 * time.Second
)

// RouterConfig configures a Router. Zero fields take the defaults above.
type RouterConfig struct {
	// Topology names streams and subjects; required.
	Topology Topology
	// Concurrency is the number of messages handled at once per consumer.
	Concurrency int
	// MaxDeliver is how many deliveries a message gets before it is
	// dead-lettered.
	MaxDeliver int
	// RetryAttempts is how many times a transient failure is tried within
	// one delivery (1 = no in-process retry), backing off from
	// RetryInitial up to RetryMax.
	RetryAttempts int
	RetryInitial  time.Duration
	RetryMax      time.Duration
	// NakBaseDelay and NakMaxDelay shape the redelivery delay after a
	// transient failure: NakBaseDelay·2^(deliveries-1), ±20% jitter,
	// capped at NakMaxDelay.
	NakBaseDelay time.Duration
	NakMaxDelay  time.Duration
	// FetchWait is how long one pull waits for messages; it also bounds how
	// long a stop waits for a pull in flight.
	FetchWait time.Duration
	// ShutdownTimeout is how long Run waits, after its context ends, for
	// in-flight handlers before cancelling them and releasing their
	// messages for redelivery. Handlers are never cancelled while a pull
	// is still open (a pull lasts at most FetchWait); see releaseFetched.
	ShutdownTimeout time.Duration
	// HandlerTimeout bounds one handler call.
	HandlerTimeout time.Duration
	// AckWait applies to every route whose ConsumerSpec leaves it zero.
	AckWait time.Duration
	// BatchSize is the most messages in one batch of a batch route
	// (HandleBatch) whose options leave it zero; 1 turns batching off.
	BatchSize int
	// BatchWait is how long a batch that is not full waits for more
	// messages before it starts, for batch routes whose options leave it
	// zero; 0 starts a batch with what has arrived.
	BatchWait time.Duration
	// Logger receives the router's logs; required.
	Logger logrus.FieldLogger
	// Metrics, optional.
	Metrics *Metrics
	// Failures, optional, records failed deliveries for operators.
	Failures FailureRecorder
	// BusKey, when set, proves the dead letters the router publishes and
	// is required of every Stripe event, tick, event and dead letter it
	// delivers: one without a valid proof (keys.HeaderBusProof) is not
	// handled (dead-lettered, saying so; a dead letter is dropped).
	BusKey *keys.BusKey
	// Paused, optional, reports whether an operator paused a consumer
	// (package control): its route then fetches nothing until it is
	// resumed, while what it holds finishes. Nothing is lost: unfetched
	// messages wait in the stream.
	Paused func(consumer string) bool
}

// pausePoll is how often a paused route looks whether it was resumed.
const pausePoll = 500 * time.Millisecond

// waitWhilePaused holds a route while its consumer is paused; it reports
// false once ctx ended.
func (r *Router) waitWhilePaused(ctx context.Context, name string, log logrus.FieldLogger) bool {
	if r.cfg.Paused == nil || !r.cfg.Paused(name) {
		return ctx.Err() == nil
	}
	log.Warn("consumer paused by an operator: fetching nothing until it is resumed")
	for r.cfg.Paused(name) {
		sleep(ctx, pausePoll)
		if ctx.Err() != nil {
			return false
		}
	}
	log.Info("consumer resumed: fetching again")
	return true
}

func (c RouterConfig) withDefaults() RouterConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = ConcurrencyDefault
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = MaxDeliverDefault
	}
	if c.RetryAttempts == 0 {
		c.RetryAttempts = RetryAttemptsDefault
	}
	if c.BatchSize == 0 {
		c.BatchSize = BatchSizeDefault
	}
	def(&c.RetryInitial, RetryInitialDefault)
	def(&c.RetryMax, RetryMaxDefault)
	def(&c.NakBaseDelay, NakBaseDelayDefault)
	def(&c.NakMaxDelay, NakMaxDelayDefault)
	def(&c.FetchWait, FetchWaitDefault)
	def(&c.ShutdownTimeout, ShutdownTimeoutDefault)
	def(&c.HandlerTimeout, HandlerTimeoutDefault)
	def(&c.AckWait, AckWaitDefault)
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	return c
}

// Validate reports the first problem with c.
func (c RouterConfig) Validate() error {
	if err := c.Topology.Validate(); err != nil {
		return err
	}
	if c.Logger == nil {
		return errors.New("router: Logger is required")
	}
	if c.Concurrency < 1 || c.MaxDeliver < 1 || c.RetryAttempts < 1 {
		return errors.New("router: Concurrency, MaxDeliver and RetryAttempts must be at least 1")
	}
	if c.BatchSize < 1 || c.BatchSize > BatchSizeMax || c.BatchWait < 0 {
		return fmt.Errorf("router: BatchSize must be 1 to %d and BatchWait not negative", BatchSizeMax)
	}
	return nil
}

// Route binds a handler to a durable consumer.
type Route struct {
	Consumer ConsumerSpec
	// Handler handles one message. On a batch route it runs Batch on a
	// batch of one, for tools that replay messages one at a time.
	Handler Handler
	// Batch, set by HandleBatch, handles the route's messages in batches
	// shaped by BatchOptions; nil on a route registered with Handle.
	Batch        BatchHandler
	BatchOptions BatchOptions
}

// Router pulls messages from durable consumers and hands them to handlers.
type Router struct {
	cfg        RouterConfig
	js         jetstream.JetStream
	pub        *Publisher
	log        logrus.FieldLogger
	routes     []Route
	middleware []Middleware
	ready      atomic.Int32

	handlerCtx    context.Context
	cancelHandler context.CancelFunc
	stopping      atomic.Bool
	// pullsOver is closed once Run's context has ended and every route's
	// last pull is over: a message released after that stays released
	// (see releaseFetched).
	pullsOver chan struct{}
}

// NewRouter returns a router on js. Register routes with Handle, then Run.
func NewRouter(js jetstream.JetStream, cfg RouterConfig) (*Router, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hctx, cancel := context.WithCancel(context.Background())
	return &Router{
		cfg:           cfg,
		js:            js,
		pub:           NewPublisher(js, cfg.Topology, WithBusKey(cfg.BusKey)),
		log:           cfg.Logger,
		handlerCtx:    hctx,
		cancelHandler: cancel,
	}, nil
}

// Use appends middleware. The first added is the outermost. Use before Run.
func (r *Router) Use(mw ...Middleware) { r.middleware = append(r.middleware, mw...) }

// Handle registers h for the consumer c. Use before Run.
func (r *Router) Handle(c ConsumerSpec, h Handler) {
	if c.AckWait == 0 {
		c.AckWait = r.cfg.AckWait
	}
	if k := r.cfg.BusKey; k != nil && provenKind(c.Kind) {
		h = proven(k, c.Kind, h)
	}
	r.routes = append(r.routes, Route{Consumer: c, Handler: h})
}

// Routes returns the registered routes.
func (r *Router) Routes() []Route { return append([]Route(nil), r.routes...) }

// Ready reports whether every consumer has been created and is being
// fetched from.
func (r *Router) Ready() bool { return int(r.ready.Load()) == len(r.routes) }

// Run ensures the consumers and handles messages until ctx ends, then stops
// fetching, lets in-flight handlers finish for up to ShutdownTimeout, and
// releases what is left for redelivery. It returns nil after a clean stop.
func (r *Router) Run(ctx context.Context) error {
	if len(r.routes) == 0 {
		return errors.New("router: no routes")
	}
	r.pullsOver = make(chan struct{})
	var wg, pulling sync.WaitGroup
	for _, rt := range r.routes {
		rt.Handler = r.wrap(rt.Handler)
		wg.Add(1)
		pulling.Add(1)
		go func() {
			defer wg.Done()
			// The route calls pulled when its fetch loop ends, before it
			// waits for its handlers; the defer covers a route stopped
			// before it could fetch.
			pulled := sync.OnceFunc(pulling.Done)
			defer pulled()
			if rt.Batch != nil {
				r.runBatchRoute(ctx, rt, pulled)
				return
			}
			r.runRoute(ctx, rt, pulled)
		}()
	}
	<-ctx.Done()
	r.stopping.Store(true)
	go func() {
		pulling.Wait()
		close(r.pullsOver)
	}()
	// Handlers cancelled at the deadline release their messages, so not
	// while a pull is still open.
	timer := time.AfterFunc(r.cfg.ShutdownTimeout, func() {
		<-r.pullsOver
		r.cancelHandler()
	})
	wg.Wait()
	timer.Stop()
	r.cancelHandler()
	return nil
}

// runRoute fetches from the route's consumer and handles each message in
// its own goroutine until ctx ends. It calls pulled once it will open no
// more pulls, then waits for its handlers.
func (r *Router) runRoute(ctx context.Context, rt Route, pulled func()) {
	log := r.log.WithField("consumer", rt.Consumer.Name)
	cons := r.ensureConsumer(ctx, rt.Consumer, log)
	if cons == nil {
		return
	}
	r.ready.Add(1)
	defer r.ready.Add(-1)
	log.Info("consuming")

	conc := r.cfg.Concurrency
	sem := make(chan struct{}, conc)
	release := func(n int) {
		for i := 0; i < n; i++ {
			<-sem
		}
	}
	var inflight sync.WaitGroup
	defer inflight.Wait()
	defer pulled()
	fetchBackoff := newFetchBackoff()
	for ctx.Err() == nil {
		if !r.waitWhilePaused(ctx, rt.Consumer.Name, log) {
			return
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
	fill:
		for n < conc {
			select {
			case sem <- struct{}{}:
				n++
			default:
				break fill
			}
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(r.cfg.FetchWait))
		if err != nil {
			release(n)
			cons = r.fetchFailed(ctx, rt, cons, err, fetchBackoff, log)
			continue
		}
		got := 0
		var late []jetstream.Msg
		for jm := range batch.Messages() {
			if ctx.Err() != nil {
				late = append(late, jm)
				continue
			}
			got++
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				defer release(1)
				r.process(rt, jm)
			}()
		}
		// The pull is over: what came after the stop goes to another worker.
		r.releaseFetched(rt.Consumer.Name, late)
		release(n - got)
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			cons = r.fetchFailed(ctx, rt, cons, err, fetchBackoff, log)
			continue
		}
		fetchBackoff.Reset()
	}
}

// releaseFetched hands back, for another worker, messages that a pull
// delivered after the route began to stop. Only once that pull is over:
// JetStream redelivers a released message at once to a pull still
// waiting, so releasing into one bounces the message back, spending one
// of its deliveries each time, until the pull is full or expires. At the
// defaults that is enough for the next worker to dead-letter it unrun.
func (r *Router) releaseFetched(consumer string, msgs []jetstream.Msg) {
	for _, jm := range msgs {
		_ = jm.Nak()
		r.cfg.Metrics.messages.WithLabelValues(consumer, OutcomeReleased).Inc()
	}
}

func newFetchBackoff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 2 * time.Second
	b.MaxElapsedTime = 0
	return b
}

// fetchFailed waits before the next fetch and, if the consumer or its stream
// vanished (a server that lost its state), creates them again.
func (r *Router) fetchFailed(ctx context.Context, rt Route, cons jetstream.Consumer, err error, b *backoff.ExponentialBackOff, log logrus.FieldLogger) jetstream.Consumer {
	r.cfg.Metrics.fetchErr.WithLabelValues(rt.Consumer.Name).Inc()
	log.WithError(err).Warn("fetch failed; retrying")
	sleep(ctx, b.NextBackOff())
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		if c := r.ensureConsumer(ctx, rt.Consumer, log); c != nil {
			return c
		}
	}
	return cons
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// ensureConsumer retries until the consumer exists or ctx ends (nil).
func (r *Router) ensureConsumer(ctx context.Context, spec ConsumerSpec, log logrus.FieldLogger) jetstream.Consumer {
	b := newFetchBackoff()
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cons, err := r.cfg.Topology.EnsureConsumer(cctx, r.js, spec)
		cancel()
		if err == nil {
			return cons
		}
		if ctx.Err() != nil {
			return nil
		}
		log.WithError(err).Warn("cannot create consumer yet; retrying")
		sleep(ctx, b.NextBackOff())
	}
}

// process runs one delivery to completion: handle, then ack, retry later,
// dead-letter or release.
func (r *Router) process(rt Route, jm jetstream.Msg) {
	name := rt.Consumer.Name
	m, err := newMessage(jm)
	if err != nil {
		r.log.WithError(err).WithField("consumer", name).Error("message without JetStream metadata; releasing it")
		_ = jm.Nak()
		return
	}
	m.MaxDeliver = r.cfg.MaxDeliver
	log := r.log.WithFields(logrus.Fields{
		"consumer":       name,
		"subject":        m.Subject,
		"msg_id":         m.ID(),
		"stream_seq":     m.StreamSeq,
		"attempt":        m.Deliveries,
		"correlation_id": m.CorrelationID(),
	})
	metrics := r.cfg.Metrics
	if m.ForOtherConsumer() {
		r.skip(m, log)
		return
	}
	if int(m.Deliveries) > r.cfg.MaxDeliver {
		// Only a worker that died or timed out mid-handler gets here: the
		// last failure we saw ourselves dead-lettered at MaxDeliver.
		r.deadLetter(m, fmt.Sprintf("delivered %d times, more than the limit of %d (workers crashed or timed out handling it)", m.Deliveries, r.cfg.MaxDeliver), log)
		return
	}

	metrics.inflight.WithLabelValues(name).Inc()
	start := time.Now()
	err = r.invoke(rt, m)
	metrics.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
	metrics.inflight.WithLabelValues(name).Dec()

	if err == nil {
		if aerr := jm.Ack(); aerr != nil {
			// Redelivery will find the inbox row and only ack.
			log.WithError(aerr).Warn("ack failed after commit; the message will be redelivered and skipped")
		}
		metrics.messages.WithLabelValues(name, OutcomeAcked).Inc()
		return
	}
	r.settle(m, err, log)
}

// skip acknowledges a replay meant for another consumer without running
// the handler: an operator replayed a message for one consumer only.
func (r *Router) skip(m *Message, log logrus.FieldLogger) {
	if err := m.raw.Ack(); err != nil {
		log.WithError(err).Warn("ack of a replay for another consumer failed; it will be redelivered and skipped again")
	}
	r.cfg.Metrics.messages.WithLabelValues(m.Consumer, OutcomeSkipped).Inc()
	log.WithField("replay_for", m.Header.Get(HeaderReplayFor)).Debug("replay for another consumer; acknowledged without running")
}

// settle decides the fate of a delivery whose handling failed with err:
// released at shutdown, dead-lettered, or retried after a delay.
func (r *Router) settle(m *Message, err error, log logrus.FieldLogger) {
	if r.stopping.Load() && r.handlerCtx.Err() != nil {
		_ = m.raw.Nak()
		r.cfg.Metrics.messages.WithLabelValues(m.Consumer, OutcomeReleased).Inc()
		log.WithError(err).Info("handler cancelled by shutdown; released for redelivery")
		return
	}
	var ra *RetryAfterError
	var de *DeferError
	switch {
	case IsPermanent(err):
		r.recordFailure(m, err, true)
		r.deadLetter(m, err.Error(), log)
	case errors.As(err, &de) && int(m.Deliveries) < r.cfg.MaxDeliver:
		r.deferMsg(m, de, log)
	case int(m.Deliveries) >= r.cfg.MaxDeliver:
		r.recordFailure(m, err, true)
		r.deadLetter(m, fmt.Sprintf("failed %d deliveries, last error: %v", m.Deliveries, err), log)
	case errors.As(err, &ra):
		r.recordFailure(m, err, false)
		r.retryLater(m, ra.Delay, err, log)
	default:
		r.recordFailure(m, err, false)
		r.retryLater(m, r.NakDelay(int(m.Deliveries)), err, log)
	}
}

// invoke calls the handler chain, retrying transient failures a few times
// in-process before giving the message back to JetStream.
func (r *Router) invoke(rt Route, m *Message) (err error) {
	ctx, cancel := context.WithTimeout(r.handlerCtx, r.cfg.HandlerTimeout)
	defer cancel()
	if telemetry.Tracing() {
		var span trace.Span
		ctx, span = startConsumerSpan(ctx, rt.Consumer.Name, m)
		defer func() { telemetry.EndSpan(span, err) }()
	}

	// Keep the message ours while the handler works.
	ackWait := rt.Consumer.AckWait
	if ackWait == 0 {
		ackWait = AckWaitDefault
	}
	hb := time.NewTicker(ackWait / 3)
	done := make(chan struct{})
	defer func() { close(done); hb.Stop() }()
	go func() {
		for {
			select {
			case <-hb.C:
				_ = m.InProgress()
			case <-done:
				return
			}
		}
	}()

	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = r.cfg.RetryInitial
	eb.MaxInterval = r.cfg.RetryMax
	eb.MaxElapsedTime = 0
	b := backoff.WithContext(backoff.WithMaxRetries(eb, uint64(r.cfg.RetryAttempts-1)), ctx)
	return backoff.Retry(func() error {
		err := rt.Handler(ctx, m)
		var ra *RetryAfterError
		var de *DeferError
		if err != nil && (IsPermanent(err) || errors.As(err, &ra) || errors.As(err, &de) || ctx.Err() != nil) {
			return backoff.Permanent(err)
		}
		return err
	}, b)
}

// NakDelay is the redelivery delay after the given number of failed
// deliveries: exponential from NakBaseDelay with ±20% jitter, capped at
// NakMaxDelay.
func (r *Router) NakDelay(deliveries int) time.Duration {
	if deliveries < 1 {
		deliveries = 1
	}
	d := r.cfg.NakBaseDelay
	for i := 1; i < deliveries && d < r.cfg.NakMaxDelay; i++ {
		d *= 2
	}
	if d > r.cfg.NakMaxDelay {
		d = r.cfg.NakMaxDelay
	}
	jitter := time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	if jitter > r.cfg.NakMaxDelay {
		jitter = r.cfg.NakMaxDelay
	}
	return jitter
}

func (r *Router) retryLater(m *Message, d time.Duration, err error, log logrus.FieldLogger) {
	if nerr := m.raw.NakWithDelay(d); nerr != nil {
		log.WithError(nerr).Warn("nak failed; JetStream redelivers after the ack wait")
	}
	r.cfg.Metrics.messages.WithLabelValues(m.Consumer, OutcomeRetried).Inc()
	log.WithError(err).WithField("retry_in", d.String()).Warn("handler failed; will retry")
}

// deferMsg hands m back for the delay its handler asked, as no failure.
func (r *Router) deferMsg(m *Message, de *DeferError, log logrus.FieldLogger) {
	if nerr := m.raw.NakWithDelay(de.Delay); nerr != nil {
		log.WithError(nerr).Warn("nak failed; JetStream redelivers after the ack wait")
	}
	r.cfg.Metrics.messages.WithLabelValues(m.Consumer, OutcomeDeferred).Inc()
	log.WithFields(logrus.Fields{"reason": de.Reason, "retry_in": de.Delay.String()}).Info("handler deferred the message")
}

func (r *Router) recordFailure(m *Message, err error, dead bool) {
	if r.cfg.Failures == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), failureRecordTimeout)
	defer cancel()
	f := Failure{
		Consumer: m.Consumer, MsgID: m.ID(), Subject: m.Subject, Stream: m.Stream,
		StreamSeq: m.StreamSeq, Deliveries: int(m.Deliveries), AccountID: m.Account(), Error: err.Error(),
		DeadLettered: dead, At: time.Now().UTC(),
	}
	if rerr := r.cfg.Failures.RecordFailure(ctx, f); rerr != nil {
		r.log.WithError(rerr).WithField("consumer", m.Consumer).Warn("could not record failure")
	}
}

// deadLetter publishes the message to the DLQ with Levqor-Dlq-* headers and,
// once JetStream has it, terminates the original. If the DLQ publish fails
// the message is redelivered later instead: it is never dropped.
func (r *Router) deadLetter(m *Message, reason string, log logrus.FieldLogger) {
	h := DeadLetterHeaders(m, reason, time.Now().UTC())
	ctx, cancel := context.WithTimeout(context.Background(), deadLetterPublishTimeout)
	defer cancel()
	subject := r.cfg.Topology.Subject(DLQ, m.Consumer)
	id := "dlq:" + m.Consumer + ":" + m.Stream + ":" + strconv.FormatUint(m.StreamSeq, 10)
	res, err := r.pub.Publish(ctx, subject, id, h, m.Data)
	if err != nil {
		d := r.NakDelay(int(m.Deliveries))
		_ = m.raw.NakWithDelay(d)
		r.cfg.Metrics.messages.WithLabelValues(m.Consumer, OutcomeDLQFailed).Inc()
		log.WithError(err).WithField("retry_in", d.String()).Error("dead-letter publish failed; message kept for redelivery")
		return
	}
	if err := m.raw.Term(); err != nil {
		log.WithError(err).Warn("term failed after dead-lettering; a redelivery will be deduplicated by the DLQ")
	}
	r.cfg.Metrics.messages.WithLabelValues(m.Consumer, OutcomeDeadLettered).Inc()
	log.WithFields(logrus.Fields{"dlq_seq": res.Seq, "reason": h.Get(HeaderDlqReason)}).Error("dead-lettered")
}

// DeadLetterHeaders returns the headers of m's dead letter: the original
// headers, its logical id moved to Levqor-Msg-Id (a dead letter's own
// Nats-Msg-Id is its DLQ dedupe id), and the Levqor-Dlq-* headers.
func DeadLetterHeaders(m *Message, reason string, at time.Time) nats.Header {
	h := nats.Header{}
	for k, v := range m.Header {
		// A replay's addressing is not the dead letter's: the DLQ's own
		// consumers must handle it, and Levqor-Dlq-Consumer says whose it
		// was.
		if k == HeaderMsgID || k == HeaderReplayFor || k == HeaderReplayForce || strings.HasPrefix(k, "Nats-") {
			continue
		}
		h[k] = append([]string(nil), v...)
	}
	h.Set(HeaderOriginalMsgID, m.ID())
	h.Set(HeaderDlqReason, headerSafe(reason, dlqReasonMaxBytes))
	h.Set(HeaderDlqConsumer, m.Consumer)
	h.Set(HeaderDlqStream, m.Stream)
	h.Set(HeaderDlqSeq, strconv.FormatUint(m.StreamSeq, 10))
	h.Set(HeaderDlqSubject, m.Subject)
	h.Set(HeaderDlqDeliveries, strconv.FormatUint(m.Deliveries, 10))
	h.Set(HeaderDlqAt, at.UTC().Format(time.RFC3339Nano))
	return h
}

// headerSafe makes s a valid single-line header value of at most max bytes.
func headerSafe(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == '\t' {
			return ' '
		}
		return r
	}, s)
	if len(s) > max {
		s = s[:max-3] + "..."
	}
	return s
}

// Recoverer turns a handler panic into an error carrying the stack, so one
// bad message cannot crash a worker. The error is transient: the message is
// retried and, if it keeps panicking, dead-lettered at MaxDeliver.
func Recoverer(next Handler) Handler {
	return func(ctx context.Context, m *Message) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("handler panicked: %v: %s", p, debug.Stack())
				// A panic is a bug, whatever happens to the message next:
				// logged at error level, it is reported (SENTRY_DSN).
				Logger(ctx).WithError(err).Error("handler panicked")
			}
		}()
		return next(ctx, m)
	}
}

// Logging puts a logger with the message's fields into the handler's
// context (see Logger) and logs failures.
func Logging(base logrus.FieldLogger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			fields := logrus.Fields{
				"consumer":   m.Consumer,
				"subject":    m.Subject,
				"msg_id":     m.ID(),
				"stream_seq": m.StreamSeq,
				"attempt":    m.Deliveries,
			}
			if c := m.CorrelationID(); c != "" {
				fields["correlation_id"] = c
			}
			if a := m.Account(); a != "" {
				fields["account_id"] = a
			}
			if id := telemetry.TraceID(ctx); id != "" {
				fields["trace_id"] = id
			}
			log := base.WithFields(fields)
			start := time.Now()
			err := next(WithLogger(ctx, log), m)
			var de *DeferError
			if errors.As(err, &de) {
				log.WithField("duration_ms", time.Since(start).Milliseconds()).Debug("handler deferred the message")
			} else if err != nil {
				log.WithError(err).WithField("duration_ms", time.Since(start).Milliseconds()).Warn("handler returned an error")
			} else if debugEnabled(log) {
				log.WithField("duration_ms", time.Since(start).Milliseconds()).Debug("handled")
			}
			return err
		}
	}
}

// debugEnabled reports whether log writes debug lines: a line per
// message handled is built only then.
func debugEnabled(log logrus.FieldLogger) bool {
	if e, ok := log.(*logrus.Entry); ok {
		return e.Logger.IsLevelEnabled(logrus.DebugLevel)
	}
	return true
}

// LongRunning lets h run up to limit rather than the router's
// HandlerTimeout, which suits quick handlers: backups stream for as long
// as their data takes, an erasure deletes as many blobs as it finds. The
// router keeps the message in progress the whole time; a shutdown still
// cancels h at once.
func LongRunning(h Handler, limit time.Duration) Handler {
	return func(ctx context.Context, m *Message) error {
		run, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
		defer cancel()
		stop := context.AfterFunc(ctx, func() {
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				cancel() // the router is shutting down
			}
		})
		defer stop()
		return h(run, m)
	}
}

// provenKind reports whether a router with the bus key requires its proof
// of the messages of kind: a forged Stripe event would move an account's
// billing, a forged tick run its job as of any slot, a forged event be
// acted on, a forged dead letter fail a real command. Commands are checked
// against the database instead (command.Runtime). Only ingest publishes
// Stripe events after checking Stripe's signature (and backfill, after
// listing them from Stripe), so the proof on one says that too.
func provenKind(kind Kind) bool {
	return kind == Stripe || kind == Ticks || kind == Events || kind == DLQ
}

// proven refuses the messages no Levqor process published (provenKind).
func proven(k *keys.BusKey, kind Kind, h Handler) Handler {
	return func(ctx context.Context, m *Message) error {
		if err := k.CheckMessage(m.Header.Get(keys.HeaderBusProof), m.Data); err != nil {
			if kind == DLQ {
				Logger(ctx).WithError(err).Warn("dead letter without a valid proof: dropped, nothing done")
				return nil
			}
			return Permanent(fmt.Errorf("refused: %w", err))
		}
		return h(ctx, m)
	}
}
