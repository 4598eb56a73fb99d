package bus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel/trace"

	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/telemetry"
)

// BatchHandler handles several messages as one unit of work, typically one
// database transaction, so that a consumer pays for one commit per batch
// instead of one per message.
//
// It calls step once for every message of msgs, in order, passing the
// message's own work as fn; step runs fn inside the router's middleware
// (logging, panic recovery, …) and returns its error. When step returns an
// error, the handler undoes that message's effects alone (a savepoint, or
// an undo log of changes kept in memory) and carries on with the next
// message. It returns nil once the effects of
// every message whose step succeeded are committed, and an error when
// nothing was committed (the commit failed, the database went away).
//
// The router acknowledges exactly the messages whose step succeeded, after
// the handler returned nil. A failed message goes through the same path as
// a failed single delivery, retried alone; when the handler returns an
// error, every message of the batch is run again alone, in order, so that
// only the one that fails alone is retried later. A message the handler
// never stepped is retried too (ErrNotStepped). step must be called from
// one goroutine at a time.
type BatchHandler func(ctx context.Context, msgs []*Message, step Step) error

// Step runs one message's part of a batch; see BatchHandler.
type Step func(ctx context.Context, m *Message, fn Handler) error

// ErrNotStepped is the error of a message that its batch handler returned
// without running. The message is retried.
var ErrNotStepped = errors.New("bus: the batch handler did not run this message")

// Batch defaults.
const (
	// BatchSizeDefault is the most messages in one batch. A batch's cost
	// is mostly per batch (a transaction, a dozen statements for
	// billing's), so a backlog drains faster in larger ones: 256 took
	// billing's drain from 6,100 to 7,000 events a second for 13 MiB more
	// memory (docs/benchmarks.md). With no backlog a batch holds what
	// arrived during BatchWait.
	BatchSizeDefault = 256
	// BatchSizeMax bounds BatchSize: a worker never holds more messages
	// than a consumer lets it have unacknowledged (MaxAckPendingDefault).
	BatchSizeMax = MaxAckPendingDefault
	// BatchWaitDefault is how long a batch that is not full waits for
	// more messages before it starts.
	BatchWaitDefault = 20 * time.Millisecond
)

// BatchOptions shape a batch route.
type BatchOptions struct {
	// MaxMessages is the most messages in one batch; 0 takes the
	// router's BatchSize. 1 turns batching off: each message is handled
	// alone, exactly as a route registered with Handle.
	MaxMessages int
	// MaxWait is how long a batch that is not full waits for more
	// messages before it starts; 0 takes the router's BatchWait.
	MaxWait time.Duration
	// Key, optional, names what a message's effects write to, e.g. the
	// Stripe customer an event is about. Messages with the same key are
	// never in two batches at once and are handled in stream order, so
	// concurrent batches do not wait on each other's row locks (or
	// deadlock). Without Key any batch takes any message. The key only
	// steers work: correctness never depends on it.
	Key func(*Message) string
}

// HandleBatch registers h for the consumer c: the router fetches up to
// MaxMessages messages at a time and hands them to h together. Up to the
// router's Concurrency batches run at once. The route's Handler, for tools
// that run one message at a time (operators' window replays), runs h on a
// batch of one. Use before Run.
func (r *Router) HandleBatch(c ConsumerSpec, h BatchHandler, o BatchOptions) {
	if o.MaxMessages == 0 {
		o.MaxMessages = r.cfg.BatchSize
	}
	if o.MaxWait == 0 {
		o.MaxWait = r.cfg.BatchWait
	}
	r.Handle(c, SingleHandler(h))
	if o.MaxMessages > 1 {
		rt := &r.routes[len(r.routes)-1]
		rt.Batch = h
		rt.BatchOptions = o
	}
}

// SingleHandler returns a Handler that runs h on a batch of one message.
func SingleHandler(h BatchHandler) Handler {
	return func(ctx context.Context, m *Message) error {
		var res error
		stepped := false
		err := h(ctx, []*Message{m}, func(ctx context.Context, sm *Message, fn Handler) error {
			if sm != m || stepped {
				return errors.New("bus: step called for a message outside the batch, or twice")
			}
			stepped = true
			res = fn(ctx, sm)
			return res
		})
		switch {
		case err != nil:
			return err
		case !stepped:
			return ErrNotStepped
		}
		return res
	}
}

// wrap puts h inside the router's middleware: panic recovery innermost,
// then the registered middleware, logging outermost.
func (r *Router) wrap(h Handler) Handler {
	h = Recoverer(h)
	for i := len(r.middleware) - 1; i >= 0; i-- {
		h = r.middleware[i](h)
	}
	return Logging(r.log)(h)
}

// batchRun is one batch route while it runs: lanes that each handle one
// batch at a time, the messages held between fetch and settlement, and the
// heartbeat that keeps them ours.
type batchRun struct {
	r     *Router
	rt    Route
	ctx   context.Context // the router's run context: ends when stopping
	log   logrus.FieldLogger
	lanes []*batchQueue
	slots chan struct{} // one per message held

	mu   sync.Mutex
	held map[*Message]struct{}

	laneWG sync.WaitGroup
	beatWG sync.WaitGroup
	done   chan struct{} // closed once every lane has returned
}

// runBatchRoute fetches from the route's consumer into lanes. With a Key
// each lane has its own queue and a message goes to the lane of its key;
// without one, the lanes share a queue. It calls pulled once it will open
// no more pulls, then waits for its lanes.
func (r *Router) runBatchRoute(ctx context.Context, rt Route, pulled func()) {
	log := r.log.WithField("consumer", rt.Consumer.Name)
	cons := r.ensureConsumer(ctx, rt.Consumer, log)
	if cons == nil {
		return
	}
	r.ready.Add(1)
	defer r.ready.Add(-1)
	o := rt.BatchOptions
	lanes := r.cfg.Concurrency
	log.WithFields(logrus.Fields{"batch_size": o.MaxMessages, "batch_wait": o.MaxWait.String(), "lanes": lanes}).Info("consuming in batches")

	b := &batchRun{
		r: r, rt: rt, ctx: ctx, log: log,
		slots: make(chan struct{}, lanes*o.MaxMessages),
		held:  map[*Message]struct{}{},
		done:  make(chan struct{}),
	}
	shared := newBatchQueue()
	for i := 0; i < lanes; i++ {
		q := shared
		if o.Key != nil {
			q = newBatchQueue()
		}
		b.lanes = append(b.lanes, q)
		b.laneWG.Add(1)
		go func() {
			defer b.laneWG.Done()
			b.runLane(q)
		}()
	}
	b.beatWG.Add(1)
	go func() {
		defer b.beatWG.Done()
		b.heartbeat()
	}()
	defer b.stop()
	defer pulled()

	fetchBackoff := newFetchBackoff()
	for ctx.Err() == nil {
		if !r.waitWhilePaused(ctx, rt.Consumer.Name, log) {
			return
		}
		n := b.reserve()
		if n == 0 {
			return
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(r.cfg.FetchWait))
		if err != nil {
			b.unreserve(n)
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
			b.dispatch(jm)
		}
		// The pull is over: what came after the stop goes to another worker.
		r.releaseFetched(rt.Consumer.Name, late)
		b.unreserve(n - got)
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			cons = r.fetchFailed(ctx, rt, cons, err, fetchBackoff, log)
			continue
		}
		fetchBackoff.Reset()
	}
}

// pullMax bounds the messages one pull asks for. Larger pulls left
// messages arriving at a steady, low rate waiting up to FetchWait (a
// second) before a lane saw them: with batches of 256 the 5-minute loop
// at 600 events/s had an end-to-end p99 of 1.97 s, against 24 ms with
// pulls of at most 512 (scripts/bench loop).
const pullMax = 512

// reserve waits for room for at least one more message and takes all the
// room there is, up to pullMax; 0 when the route is stopping.
func (b *batchRun) reserve() int {
	select {
	case b.slots <- struct{}{}:
	case <-b.ctx.Done():
		return 0
	}
	n := 1
	for n < min(cap(b.slots), pullMax) {
		select {
		case b.slots <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

func (b *batchRun) unreserve(n int) {
	for i := 0; i < n; i++ {
		<-b.slots
	}
}

// dispatch queues a fetched message in its lane.
func (b *batchRun) dispatch(jm jetstream.Msg) {
	m, err := newMessage(jm)
	if err != nil {
		b.log.WithError(err).Error("message without JetStream metadata; releasing it")
		_ = jm.Nak()
		b.unreserve(1)
		return
	}
	m.MaxDeliver = b.r.cfg.MaxDeliver
	if m.ForOtherConsumer() {
		b.r.skip(m, b.r.msgLog(m))
		b.unreserve(1)
		return
	}
	b.mu.Lock()
	b.held[m] = struct{}{}
	b.mu.Unlock()
	b.lanes[b.laneOf(m)].push(m, b.rt.BatchOptions.MaxMessages)
}

func (b *batchRun) laneOf(m *Message) (lane int) {
	key := b.rt.BatchOptions.Key
	if key == nil || len(b.lanes) == 1 {
		return 0
	}
	defer func() {
		if p := recover(); p != nil {
			b.log.WithField("msg_id", m.ID()).Errorf("batch key function panicked: %v", p)
			lane = 0
		}
	}()
	h := fnv.New32a()
	_, _ = h.Write([]byte(key(m)))
	return int(h.Sum32() % uint32(len(b.lanes)))
}

// settled forgets messages whose fate is decided (acked, retried later,
// dead-lettered or released) and frees their room.
func (b *batchRun) settled(msgs []*Message) {
	b.mu.Lock()
	for _, m := range msgs {
		delete(b.held, m)
	}
	b.mu.Unlock()
	b.unreserve(len(msgs))
}

// heartbeat tells JetStream, for every message held, that work is in
// progress, so that neither a long batch nor a wait in a lane's queue lets
// the ack wait expire.
func (b *batchRun) heartbeat() {
	ackWait := b.rt.Consumer.AckWait
	if ackWait == 0 {
		ackWait = AckWaitDefault
	}
	t := time.NewTicker(ackWait / 3)
	defer t.Stop()
	var msgs []*Message
	for {
		select {
		case <-t.C:
		case <-b.done:
			return
		}
		b.mu.Lock()
		msgs = msgs[:0]
		for m := range b.held {
			msgs = append(msgs, m)
		}
		b.mu.Unlock()
		for _, m := range msgs {
			_ = m.InProgress()
		}
	}
}

// stop ends the lanes, once the fetch loop has returned: each finishes the
// batch it is handling and releases what is still queued.
func (b *batchRun) stop() {
	for _, q := range b.lanes {
		q.close()
	}
	b.laneWG.Wait()
	// The heartbeat ran until the last batch was settled.
	close(b.done)
	b.beatWG.Wait()
}

// runLane handles batches from q until q is closed and empty.
func (b *batchRun) runLane(q *batchQueue) {
	o := b.rt.BatchOptions
	for {
		msgs, ok := q.next(o.MaxMessages, o.MaxWait, b.ctx.Done())
		if !ok {
			return
		}
		if b.ctx.Err() != nil {
			// Stopping: release the batch, once no pull can take it
			// straight back (see releaseFetched).
			<-b.r.pullsOver
			for _, m := range msgs {
				_ = m.raw.Nak()
				b.r.cfg.Metrics.messages.WithLabelValues(b.rt.Consumer.Name, OutcomeReleased).Inc()
			}
		} else {
			b.r.processBatch(b.rt, msgs)
		}
		b.settled(msgs)
	}
}

// processBatch runs one batch to completion: every message ends acked,
// retried later, dead-lettered or released.
func (r *Router) processBatch(rt Route, in []*Message) {
	msgs := in[:0:0]
	for _, m := range in {
		if int(m.Deliveries) > r.cfg.MaxDeliver {
			r.deadLetter(m, fmt.Sprintf("delivered %d times, more than the limit of %d (workers crashed or timed out handling it)", m.Deliveries, r.cfg.MaxDeliver), r.msgLog(m))
			continue
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		return
	}
	name := rt.Consumer.Name
	inflight := r.cfg.Metrics.inflight.WithLabelValues(name)
	inflight.Add(float64(len(msgs)))
	defer inflight.Sub(float64(len(msgs)))

	results, err := r.runBatch(rt, msgs)
	if err != nil {
		r.processAlone(rt, msgs, err)
		return
	}
	acked := r.cfg.Metrics.messages.WithLabelValues(name, OutcomeAcked)
	var failed []int
	for i, m := range msgs {
		if results[i] != nil {
			failed = append(failed, i)
			continue
		}
		r.ack(m, acked)
	}
	for _, i := range failed {
		m, err := msgs[i], results[i]
		if r.retryable(err) && r.cfg.RetryAttempts > 1 {
			err = r.retryAlone(rt, m, err)
		}
		if err == nil {
			r.ack(m, acked)
			continue
		}
		r.settle(m, err, r.msgLog(m))
	}
}

func (r *Router) ack(m *Message, acked interface{ Inc() }) {
	if err := m.raw.Ack(); err != nil {
		// Redelivery will find the inbox row and only ack.
		r.msgLog(m).WithError(err).Warn("ack failed after commit; the message will be redelivered and skipped")
	}
	acked.Inc()
}

// retryable reports whether a failure is worth an in-process retry: not
// permanent, not timed by the handler itself (RetryAfter, Defer), not a
// shutdown.
func (r *Router) retryable(err error) bool {
	var ra *RetryAfterError
	var de *DeferError
	return !IsPermanent(err) && !errors.As(err, &ra) && !errors.As(err, &de) && r.handlerCtx.Err() == nil
}

func (r *Router) retryBackoff(attempts int) backoff.BackOff {
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = r.cfg.RetryInitial
	eb.MaxInterval = r.cfg.RetryMax
	eb.MaxElapsedTime = 0
	return backoff.WithContext(backoff.WithMaxRetries(eb, uint64(attempts)), r.handlerCtx)
}

// holdBackMinMargin is the least extra delay a message held back behind a
// failed message of its key gets over that message's own retry delay, so
// that JetStream hands the failed one back first.
const holdBackMinMargin = 100 * time.Millisecond

// processAlone settles the messages of a batch that failed as a whole
// (nothing committed: the commit failed, the handler's deadline hit). A
// batch error says nothing about which message caused it, and batching the
// same messages again would let one culprit (a slow call, a message that
// makes the commit fail) spend every message's deliveries. So each message
// is run alone, in order, one transaction each: those that succeed are
// acked, and only a failing one goes the way of a failed delivery (backoff,
// then the DLQ at MaxDeliver).
//
// Per-key order: once a message of a key is handed back for a retry, the
// later messages of that key in this batch are not run; they are handed
// back too, with a little more delay than the failed one, so that they
// come back after it and are applied behind it. Holding them back costs
// them a delivery, so one whose deliveries are used up is run anyway
// rather than dead-lettered for another message's fault (effects stay
// exactly-once through the inbox; only the order may slip). A key is not
// held once its failed message is dead-lettered: that one will not come
// back. Without BatchOptions.Key nothing is held back, as no order is
// promised then.
func (r *Router) processAlone(rt Route, msgs []*Message, batchErr error) {
	if r.handlerCtx.Err() != nil {
		// Shutting down: every message is released.
		for _, m := range msgs {
			r.settle(m, batchErr, r.msgLog(m))
		}
		return
	}
	r.log.WithError(batchErr).WithFields(logrus.Fields{"consumer": rt.Consumer.Name, "batch_size": len(msgs)}).
		Warn("batch failed as a whole; running its messages alone")
	acked := r.cfg.Metrics.messages.WithLabelValues(rt.Consumer.Name, OutcomeAcked)
	held := map[string]time.Duration{} // key → hold-back delay
	for _, m := range msgs {
		log := r.msgLog(m)
		if r.handlerCtx.Err() != nil {
			r.settle(m, batchErr, log)
			continue
		}
		key, keyed := r.batchKey(rt, m)
		if d, ok := held[key]; keyed && ok {
			if int(m.Deliveries) < r.cfg.MaxDeliver {
				r.holdBack(m, d, log)
				continue
			}
			log.Warn("an earlier message of the same key is being retried, but this one has no deliveries left to wait; running it now")
		}
		var err error
		if len(msgs) == 1 {
			err = batchFailure(batchErr) // it has just run alone
		} else {
			err = r.runAlone(rt, m)
		}
		if err != nil && r.retryable(err) && r.cfg.RetryAttempts > 1 {
			err = r.retryAlone(rt, m, err)
		}
		if err == nil {
			r.ack(m, acked)
			continue
		}
		d, later := r.retryDelay(m, err)
		if !later {
			r.settle(m, err, log)
			continue
		}
		var de *DeferError
		if errors.As(err, &de) {
			r.deferMsg(m, de, log)
		} else {
			r.recordFailure(m, err, false)
			r.retryLater(m, d, err, log)
		}
		if keyed {
			held[key] = max(held[key], d+max(d/4, holdBackMinMargin))
		}
	}
}

// retryDelay reports whether a failed message is handed back for another
// delivery (not dead-lettered, not released at shutdown) and after how
// long, as settle decides.
func (r *Router) retryDelay(m *Message, err error) (time.Duration, bool) {
	if r.stopping.Load() && r.handlerCtx.Err() != nil {
		return 0, false
	}
	if IsPermanent(err) || int(m.Deliveries) >= r.cfg.MaxDeliver {
		return 0, false
	}
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return ra.Delay, true
	}
	var de *DeferError
	if errors.As(err, &de) {
		return de.Delay, true
	}
	return r.NakDelay(int(m.Deliveries)), true
}

// holdBack hands m back unrun, to come back after d, behind a failed
// message of its key. It is no failure of m's.
func (r *Router) holdBack(m *Message, d time.Duration, log logrus.FieldLogger) {
	if err := m.raw.NakWithDelay(d); err != nil {
		log.WithError(err).Warn("nak failed; JetStream redelivers after the ack wait")
	}
	r.cfg.Metrics.messages.WithLabelValues(m.Consumer, OutcomeRetried).Inc()
	log.WithField("retry_in", d.String()).Info("held back behind a failed message of the same key")
}

// batchKey is m's key under the route's BatchOptions.Key; ok is false
// without a Key or when it panics.
func (r *Router) batchKey(rt Route, m *Message) (key string, ok bool) {
	kf := rt.BatchOptions.Key
	if kf == nil {
		return "", false
	}
	defer func() {
		if p := recover(); p != nil {
			r.msgLog(m).Errorf("batch key function panicked: %v", p)
			key, ok = "", false
		}
	}()
	return kf(m), true
}

// runAlone runs m as a batch of one and returns its error.
func (r *Router) runAlone(rt Route, m *Message) error {
	res, err := r.runBatch(rt, []*Message{m})
	if err != nil {
		return batchFailure(err)
	}
	return res[0]
}

// batchFailure is a batch handler's own error (nothing committed) as a
// message's failure. It is never permanent: a failed commit or a database
// gone read-only says nothing final about the message, and MaxDeliver
// still ends its retries.
func batchFailure(err error) error {
	if IsPermanent(err) {
		return errors.New(err.Error())
	}
	return err
}

// retryAlone gives a message that failed in a batch the rest of its
// in-process attempts, each as a batch of one, so that no other message's
// effects ride on it.
func (r *Router) retryAlone(rt Route, m *Message, err error) error {
	b := r.retryBackoff(r.cfg.RetryAttempts - 1)
	for {
		d := b.NextBackOff()
		if d == backoff.Stop {
			return err
		}
		sleep(r.handlerCtx, d)
		if r.handlerCtx.Err() != nil {
			return err
		}
		err = r.runAlone(rt, m)
		if err == nil || !r.retryable(err) {
			return err
		}
	}
}

// runBatch calls the batch handler once and reports each message's result,
// or the handler's error when nothing was committed.
func (r *Router) runBatch(rt Route, msgs []*Message) (results []error, err error) {
	ctx, cancel := context.WithTimeout(r.handlerCtx, r.cfg.HandlerTimeout)
	defer cancel()
	if telemetry.Tracing() {
		var span trace.Span
		ctx, span = startBatchSpan(ctx, rt.Consumer.Name, msgs)
		defer func() { telemetry.EndSpan(span, err) }()
	}
	results = make([]error, len(msgs))
	stepped := make([]bool, len(msgs))
	index := make(map[*Message]int, len(msgs))
	for i, m := range msgs {
		index[m] = i
	}
	duration := r.cfg.Metrics.duration.WithLabelValues(rt.Consumer.Name)
	step := func(sctx context.Context, m *Message, fn Handler) error {
		i, ok := index[m]
		if !ok || stepped[i] {
			return errors.New("bus: step called for a message outside the batch, or twice")
		}
		stepped[i] = true
		if k := r.cfg.BusKey; k != nil && provenKind(rt.Consumer.Kind) {
			if err := k.CheckMessage(m.Header.Get(keys.HeaderBusProof), m.Data); err != nil {
				results[i] = Permanent(fmt.Errorf("refused: %w", err))
				return results[i]
			}
		}
		start := time.Now()
		var span trace.Span
		if telemetry.Tracing() {
			sctx, span = startConsumerSpan(sctx, rt.Consumer.Name, m)
		}
		serr := r.wrap(fn)(sctx, m)
		if span != nil {
			telemetry.EndSpan(span, serr)
		}
		duration.Observe(time.Since(start).Seconds())
		results[i] = serr
		return serr
	}
	defer func() {
		if p := recover(); p != nil {
			results, err = nil, fmt.Errorf("batch handler panicked: %v: %s", p, debug.Stack())
		}
	}()
	if err := rt.Batch(ctx, msgs, step); err != nil {
		return nil, err
	}
	for i := range msgs {
		if !stepped[i] {
			results[i] = ErrNotStepped
		}
	}
	return results, nil
}

// msgLog is the router's logger with m's fields.
func (r *Router) msgLog(m *Message) logrus.FieldLogger {
	return r.log.WithFields(logrus.Fields{
		"consumer":       m.Consumer,
		"subject":        m.Subject,
		"msg_id":         m.ID(),
		"stream_seq":     m.StreamSeq,
		"attempt":        m.Deliveries,
		"correlation_id": m.CorrelationID(),
	})
}

// batchQueue holds fetched messages until a lane takes them. Several lanes
// may share one.
type batchQueue struct {
	mu      sync.Mutex
	items   []queued
	closed  bool
	changed chan struct{} // closed and replaced when waiters may act
}

type queued struct {
	m  *Message
	at time.Time
}

func newBatchQueue() *batchQueue {
	return &batchQueue{changed: make(chan struct{})}
}

func (q *batchQueue) notifyLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// push queues m and wakes the lanes when they may have something to do:
// the queue stopped being empty or holds a full batch.
func (q *batchQueue) push(m *Message, max int) {
	q.mu.Lock()
	q.items = append(q.items, queued{m: m, at: time.Now()})
	if n := len(q.items); n == 1 || n >= max {
		q.notifyLocked()
	}
	q.mu.Unlock()
}

func (q *batchQueue) close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		q.notifyLocked()
	}
	q.mu.Unlock()
}

// next waits for a batch: max messages, or fewer once the oldest has
// waited wait, or once the queue is closed or stop is closed. ok is false
// when the queue is closed and empty.
func (q *batchQueue) next(max int, wait time.Duration, stop <-chan struct{}) (msgs []*Message, ok bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	stopped := false
	for {
		q.mu.Lock()
		n := len(q.items)
		if n == 0 && q.closed {
			q.mu.Unlock()
			return nil, false
		}
		var left time.Duration
		if n > 0 {
			if !stopped {
				select {
				case <-stop:
					stopped = true
				default:
				}
			}
			left = wait - time.Since(q.items[0].at)
			if n >= max || left <= 0 || q.closed || stopped {
				take := min(n, max)
				msgs = make([]*Message, take)
				for i := range msgs {
					msgs[i] = q.items[i].m
				}
				rest := copy(q.items, q.items[take:])
				clear(q.items[rest:])
				q.items = q.items[:rest]
				if rest > 0 {
					// Lanes sharing the queue may take the rest.
					q.notifyLocked()
				}
				q.mu.Unlock()
				return msgs, true
			}
		}
		changed := q.changed
		q.mu.Unlock()

		var fire <-chan time.Time
		if n > 0 {
			if timer == nil {
				timer = time.NewTimer(left)
			} else {
				timer.Reset(left)
			}
			fire = timer.C
		}
		var stopC <-chan struct{}
		if !stopped {
			stopC = stop
		}
		select {
		case <-changed:
		case <-fire:
		case <-stopC:
			stopped = true
		}
	}
}
