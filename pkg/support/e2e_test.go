package support_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/support"
	"github.com/levqor/levqor/pkg/telemetry"
)

// TestEndToEndThroughNATS runs the support worker as a workers process
// does, behind ingest and JetStream: a customer's POST becomes a command,
// the worker triages and routes it, GET shows the queue and due times; an
// SLA check tick for a slot past the due time escalates the unanswered
// enterprise ticket once, however often ticks come, and the breach goes
// out on levqor.event.support.sla_breached through the outbox; a failed
// payment event opens a ticket by itself.
func TestEndToEndThroughNATS(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		nenv := bustest.Start(t)
		cfg, err := config.FromEnv(func(string) string { return "" })
		require.NoError(t, err)
		cfg.ShutdownTimeout = 2 * time.Second
		cfg.APIRate, cfg.APIBurst = 1000, 1000
		cfg.WebhookSecrets = []string{"whsec_support_e2e"}
		log := logrus.New()
		log.SetOutput(io.Discard)
		env := &service.Env{Cfg: cfg, Log: log, Reg: telemetry.NewRegistry(), NC: nenv.NC, JS: nenv.JS, Store: st}
		srv, err := env.Ingest("")
		require.NoError(t, err)
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)

		// An enterprise customer with its own key.
		acc, err := command.NewID("acc_")
		require.NoError(t, err)
		tier := "enterprise"
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.InsertAccount(ctx, store.Account{ID: acc, Name: "Ent", ContactEmail: "ops@ent.example", StripeCustomerID: "cus_ent"}); err != nil {
				return err
			}
			return tx.SetAccountBilling(ctx, store.AccountBilling{ID: acc, Tier: &tier, Status: store.AccountStatusActive,
				Entitlements: json.RawMessage(`{"tier":"enterprise","sla":"enterprise","storage_gb":1,"sources":1,"retention":{}}`)})
		}))
		k, err := auth.GenerateKey()
		require.NoError(t, err)
		require.NoError(t, st.CreateAPIKey(ctx, store.APIKey{ID: k.ID, Hash: k.Hash, Prefix: k.Prefix, AccountID: acc}))

		r, err := env.Router([]string{support.WorkerName})
		require.NoError(t, err)
		runCtx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(runCtx) }()
		require.Eventually(t, r.Ready, 10*time.Second, 10*time.Millisecond)
		t.Cleanup(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Error("worker did not stop")
			}
		})
		relay := env.Relay()

		call := func(method, path string, body any) (int, []byte) {
			t.Helper()
			var rd io.Reader
			if body != nil {
				b, err := json.Marshal(body)
				require.NoError(t, err)
				rd = bytes.NewReader(b)
			}
			req, err := http.NewRequest(method, hs.URL+path, rd)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+k.Secret)
			if body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			return resp.StatusCode, b
		}
		get := func(id string) support.TicketView {
			t.Helper()
			status, body := call(http.MethodGet, "/v1/tickets/"+id, nil)
			require.Equal(t, http.StatusOK, status, string(body))
			var v support.TicketView
			require.NoError(t, json.Unmarshal(body, &v))
			return v
		}

		// 1. The customer opens a ticket.
		status, body := call(http.MethodPost, "/v1/tickets?wait=15s", map[string]any{"subject": "Production is down", "body": "Nothing restores since the upgrade."})
		require.Equal(t, http.StatusCreated, status, string(body))
		var cmd api.CommandView
		require.NoError(t, json.Unmarshal(body, &cmd))
		var opened support.TicketView
		require.NoError(t, json.Unmarshal(cmd.Result, &opened))

		// 2. GET shows triage, queue and due times.
		v := get(opened.ID)
		require.Equal(t, "critical", v.Severity)
		require.Equal(t, "priority", v.Queue)
		require.Contains(t, string(v.Triage), "urgency.critical")
		require.Equal(t, v.OpenedAt.Add(15*time.Minute), *v.SLA.FirstResponse.Due)
		require.Equal(t, v.OpenedAt.Add(4*time.Hour), *v.SLA.Resolution.Due)

		// 3. SLA checks at slots the test chooses: before the at-risk
		// point nothing happens; past the due time the ticket escalates,
		// once, though the tick comes twice and another one follows.
		pub := bus.NewPublisher(nenv.JS, env.Cfg.Topology)
		tick := func(slot time.Time, msgID string) {
			t.Helper()
			raw, err := json.Marshal(scheduler.Tick{Job: support.JobSLACheck, Slot: slot})
			require.NoError(t, err)
			_, err = pub.Publish(ctx, env.Cfg.Topology.Subject(bus.Ticks, support.JobSLACheck), msgID, nats.Header{}, raw)
			require.NoError(t, err)
		}
		slot := v.OpenedAt.Add(5 * time.Minute).Truncate(time.Second)
		tick(slot, scheduler.MsgID(support.JobSLACheck, slot))
		breach := v.OpenedAt.Add(20 * time.Minute).Truncate(time.Second)
		tick(breach, scheduler.MsgID(support.JobSLACheck, breach))
		tick(breach, scheduler.ManualMsgID(support.JobSLACheck, breach))
		tick(breach.Add(2*time.Minute), scheduler.MsgID(support.JobSLACheck, breach.Add(2*time.Minute)))
		require.Eventually(t, func() bool { return get(opened.ID).Queue == "escalations" }, 15*time.Second, 50*time.Millisecond)
		require.Eventually(t, func() bool { return consumerDone(t, nenv, support.ConsumerTicks) }, 15*time.Second, 50*time.Millisecond)
		v = get(opened.ID)
		require.Equal(t, "critical", v.Severity, "capped at critical")
		require.True(t, v.Breached)
		status, body = call(http.MethodGet, "/v1/tickets?breached=true&queue=escalations", nil)
		require.Equal(t, http.StatusOK, status, string(body))
		var list api.TicketList
		require.NoError(t, json.Unmarshal(body, &list))
		require.Len(t, list.Data, 1)
		escs, err := st.TicketEscalations(ctx, opened.ID)
		require.NoError(t, err)
		require.Len(t, escs, 1, "the breach escalated once; the at-risk warning was passed by the breach")
		require.Equal(t, "first_response.breached", escs[0].Key)

		// 4. A failed payment of this enterprise account opens a ticket.
		payload, err := json.Marshal(map[string]any{"account_id": acc, "invoice_id": "in_e2e", "amount_due": 50000, "currency": "gbp", "attempt_count": 1, "at": time.Now().UTC()})
		require.NoError(t, err)
		_, err = pub.Publish(ctx, env.Cfg.Topology.Subject(bus.Events, support.IncidentPaymentFailed), "evt_e2e_1", nats.Header{bus.HeaderAccount: {acc}}, payload)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			status, body := call(http.MethodGet, "/v1/tickets", nil)
			return status == http.StatusOK && json.Unmarshal(body, &list) == nil && len(list.Data) == 2
		}, 15*time.Second, 50*time.Millisecond)
		require.Equal(t, "Payment failed for invoice in_e2e", list.Data[0].Subject)

		// 5. The outbox relay publishes the breach, once, for mailers.
		_, err = relay.RelayOnce(ctx)
		require.NoError(t, err)
		var breaches, openedEvents int
		for _, m := range nenv.Messages(t, bus.Events) {
			switch m.Subject {
			case events.NameSLABreached.Subject(env.Cfg.Topology):
				breaches++
				var p map[string]any
				require.NoError(t, json.Unmarshal(m.Data, &p))
				require.Equal(t, opened.ID, p["ticket_id"])
				require.Equal(t, acc, m.Header.Get(bus.HeaderAccount))
			case events.NameTicketOpened.Subject(env.Cfg.Topology):
				openedEvents++
			}
		}
		require.Equal(t, 1, breaches)
		require.Equal(t, 2, openedEvents)
	})
}

// consumerDone reports whether consumer has acknowledged everything it
// was given.
func consumerDone(t *testing.T, nenv *bustest.Env, consumer string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := nenv.JS.Consumer(ctx, nenv.Topo.StreamName(bus.Ticks), consumer)
	if err != nil {
		return false
	}
	info, err := c.Info(ctx)
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}
