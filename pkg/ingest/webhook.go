package ingest

import (
	"errors"
	"fmt"
	"io"
	"net/http"

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

func (s *Server) stripeWebhook(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.m.stripe.WithLabelValues("rejected").Inc()
			httpjson.Error(w, http.StatusRequestEntityTooLarge, "payload_too_large",
				fmt.Sprintf("webhook body exceeds %d bytes", s.cfg.MaxBodyBytes), "")
			return
		}
		httpjson.Error(w, http.StatusBadRequest, "bad_request", "could not read body", "")
		return
	}
	if err := s.verifySignature(payload, r.Header.Get("Stripe-Signature")); err != nil {
		s.m.stripe.WithLabelValues("rejected").Inc()
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
		s.m.stripe.WithLabelValues("rejected").Inc()
		httpjson.Error(w, http.StatusBadRequest, "malformed_event", err.Error(), field)
		return
	}
	corr := correlationID(ctx)
	log := s.log.WithFields(logrus.Fields{"stripe_event_id": env.ID, "event_type": env.Type, "correlation_id": corr})
	if env.APIVersion != stripe.APIVersion {
		// Recorded (the ledger keeps api_version) and visible, not refused:
		// refusing would make Stripe retry an event we can never accept.
		s.m.apiVersion.WithLabelValues(env.APIVersion).Inc()
		log.WithFields(logrus.Fields{"api_version": env.APIVersion, "expected_api_version": stripe.APIVersion}).
			Warn("stripe event api_version differs from the version Levqor is built for")
	}
	h := nats.Header{}
	h.Set(bus.HeaderCorrelationID, corr)
	subject := s.pub.Topology().Subject(bus.Stripe, env.Type)
	res, err := s.pub.Publish(ctx, subject, env.ID, h, payload)
	if err != nil {
		s.m.stripe.WithLabelValues("unavailable").Inc()
		log.WithError(err).Error("publish failed; answering 503 so Stripe retries")
		w.Header().Set("Retry-After", "5")
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "event store unavailable, retry later", "")
		return
	}
	if res.Duplicate {
		s.m.stripe.WithLabelValues("duplicate").Inc()
		log.Info("duplicate stripe event acknowledged; already stored")
	} else {
		s.m.stripe.WithLabelValues("accepted").Inc()
		log.WithField("stream_seq", res.Seq).Debug("stripe event stored")
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"received": true, "id": env.ID, "duplicate": res.Duplicate})
}
