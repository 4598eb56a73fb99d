package ingest

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/stripeevent"
)

func (s *Server) verifySignature(payload []byte, header string) error {
	if header == "" {
		return webhook.ErrNotSigned
	}
	var err error
	for _, secret := range s.cfg.WebhookSecrets {
		if err = webhook.ValidatePayloadWithTolerance(payload, header, secret, s.cfg.Tolerance); err == nil {
			return nil
		}
		if errors.Is(err, webhook.ErrInvalidHeader) {
			return err
		}
	}
	return err
}

// bodyPool recycles webhook body buffers: a Stripe event is a few KB, and
// reading it into a fresh, repeatedly grown slice was the handler's largest
// allocation. Buffers that grew past maxPooledBody are left to the GC so one
// huge body does not pin memory.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

const maxPooledBody = 256 << 10

// readBody reads the request body, at most limit bytes, into a pooled
// buffer. The caller returns the buffer with putBody once nothing refers to
// the payload any more.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) (*[]byte, error) {
	bp := bodyPool.Get().(*[]byte)
	b := (*bp)[:0]
	if n := r.ContentLength; n > 0 && n <= limit && int64(cap(b)) < n+1 {
		b = make([]byte, 0, n+1) // +1: the read that reports io.EOF
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			*bp = b
			return bp, nil
		}
		if err != nil {
			*bp = b
			putBody(bp)
			return nil, err
		}
	}
}

func putBody(bp *[]byte) {
	if cap(*bp) <= maxPooledBody {
		*bp = (*bp)[:0]
		bodyPool.Put(bp)
	}
}

// debugEnabled reports whether log writes debug lines, so the success path
// builds no log fields when it does not.
func debugEnabled(log logrus.FieldLogger) bool {
	switch l := log.(type) {
	case *logrus.Logger:
		return l.IsLevelEnabled(logrus.DebugLevel)
	case *logrus.Entry:
		return l.Logger.IsLevelEnabled(logrus.DebugLevel)
	}
	return true
}

func (s *Server) stripeWebhook(w http.ResponseWriter, r *http.Request) {
	bp, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.m.stripeRejected.Inc()
			httpjson.Error(w, http.StatusRequestEntityTooLarge, "payload_too_large",
				fmt.Sprintf("webhook body exceeds %d bytes", s.cfg.MaxBodyBytes), "")
			return
		}
		httpjson.Error(w, http.StatusBadRequest, "bad_request", "could not read body", "")
		return
	}
	payload := *bp
	// The buffer goes back to the pool only once the publish has returned:
	// until then the NATS client may still be reading it.
	reuse := true
	defer func() {
		if reuse {
			putBody(bp)
		}
	}()
	if err := s.verifySignature(payload, r.Header.Get("Stripe-Signature")); err != nil {
		s.m.stripeRejected.Inc()
		code, msg := "signature_invalid", "no signature matches any configured webhook secret"
		switch {
		case errors.Is(err, webhook.ErrNotSigned):
			code, msg = "signature_missing", "Stripe-Signature header is missing"
		case errors.Is(err, webhook.ErrInvalidHeader):
			code, msg = "signature_malformed", "Stripe-Signature header is malformed"
		case errors.Is(err, webhook.ErrTooOld):
			code, msg = "signature_expired", fmt.Sprintf("signature timestamp is older than %s", s.cfg.Tolerance)
		}
		httpjson.Error(w, http.StatusBadRequest, code, msg, "Stripe-Signature")
		return
	}
	env, field, err := stripeevent.Parse(payload)
	if err != nil {
		s.m.stripeRejected.Inc()
		httpjson.Error(w, http.StatusBadRequest, "malformed_event", err.Error(), field)
		return
	}
	// instrument put the correlation id on the response already.
	corr := w.Header().Get(bus.HeaderCorrelationID)
	logFields := func() logrus.Fields {
		return logrus.Fields{"stripe_event_id": env.ID, "event_type": env.Type, "correlation_id": corr}
	}
	if env.APIVersion != stripe.APIVersion {
		// Recorded (the ledger keeps api_version) and visible, not refused:
		// refusing would make Stripe retry an event we can never accept.
		s.m.apiVersion.WithLabelValues(env.APIVersion).Inc()
		s.log.WithFields(logFields()).WithFields(logrus.Fields{"api_version": env.APIVersion, "expected_api_version": stripe.APIVersion}).
			Warn("stripe event api_version differs from the version Levqor is built for")
	}
	// The header is built whole, with the dedupe id in it, instead of
	// through publish options: one map, no option processing.
	h := nats.Header{bus.HeaderMsgID: {env.ID}, bus.HeaderCorrelationID: {corr}}
	subject := s.pub.Topology().Subject(bus.Stripe, env.Type)
	res, err := s.pub.PublishMsg(r.Context(), &nats.Msg{Subject: subject, Header: h, Data: payload})
	if err != nil {
		if errors.Is(err, bus.ErrAckPending) {
			// The message may still be in the NATS client's hands.
			reuse = false
		}
		s.m.stripeUnavailable.Inc()
		s.log.WithFields(logFields()).WithError(err).Error("publish failed; answering 503 so Stripe retries")
		w.Header().Set("Retry-After", "5")
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "event store unavailable, retry later", "")
		return
	}
	if res.Duplicate {
		s.m.stripeDuplicate.Inc()
	} else {
		s.m.stripeAccepted.Inc()
	}
	if debugEnabled(s.log) {
		s.log.WithFields(logFields()).WithFields(logrus.Fields{"stream_seq": res.Seq, "duplicate": res.Duplicate}).Debug("stripe event stored")
	}
	// The answer is written by hand into the body's buffer (free once
	// published): the same bytes encoding/json writes for
	// {"duplicate","id","received"}, without reflection. The id is
	// [A-Za-z0-9_] only (stripeevent.ValidID), so it needs no escaping.
	out := append(payload[:0], `{"duplicate":`...)
	out = strconv.AppendBool(out, res.Duplicate)
	out = append(out, `,"id":"`...)
	out = append(out, env.ID...)
	out = append(out, `","received":true}`+"\n"...)
	*bp = out
	wh := w.Header()
	wh["Content-Type"] = contentTypeJSON
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// contentTypeJSON is shared by every webhook answer; net/http only reads it.
var contentTypeJSON = []string{"application/json"}
