package api_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/support"
	"github.com/levqor/levqor/pkg/support/triage"
)

// ticketDetail is GET /v1/tickets/{id}.
type ticketDetail struct {
	support.TicketView
	Messages    []store.TicketMessage    `json:"messages"`
	Escalations []store.TicketEscalation `json:"escalations"`
	History     []store.TicketEvent      `json:"history"`
}

func (h *harness) openTicket(t *testing.T, key string, body map[string]any) support.TicketView {
	t.Helper()
	r := h.do(t, http.MethodPost, "/v1/tickets?wait=10s", key, body)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	var v support.TicketView
	require.NoError(t, json.Unmarshal(r.command(t).Result, &v))
	return v
}

// TestTicketsAPI: a customer opens a ticket and sees its triage, queue and
// due times; an operator answers as an agent; every endpoint keeps tenants
// apart.
func TestTicketsAPI(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, options{noStripe: true})
		h.subscribe(t, h.accA, catalog.Entitlements{Tier: "enterprise", SLA: "enterprise", StorageGB: 1, Sources: 1})
		h.runWorkers(t, support.WorkerName)

		// The customer opens a ticket with their own key.
		before := time.Now().UTC().Add(-time.Second)
		v := h.openTicket(t, h.keyA, map[string]any{"subject": "We lost data", "body": "The finance share is gone since last night."})
		require.Equal(t, h.accA, v.AccountID)
		require.Equal(t, "data_loss", v.Category)
		require.Equal(t, "critical", v.Severity)
		require.Equal(t, "priority", v.Queue)
		require.WithinDuration(t, v.OpenedAt.Add(15*time.Minute), *v.SLA.FirstResponse.Due, 0)
		require.True(t, v.OpenedAt.After(before))
		id := v.ID

		r := h.do(t, http.MethodGet, "/v1/tickets/"+id, h.keyA, nil)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		var d ticketDetail
		r.json(t, &d)
		var dec triage.Decision
		require.NoError(t, json.Unmarshal(d.Triage, &dec))
		require.Equal(t, []string{"data_loss.lost", "route.enterprise_critical"}, dec.FiredRules)
		require.Len(t, d.Messages, 1)
		require.Equal(t, store.AuthorCustomer, d.Messages[0].Author)
		require.NotNil(t, d.Escalations)
		require.Equal(t, "opened", d.History[0].Kind)
		require.NotNil(t, d.SLA.Resolution.Due)

		// The operator answers as an agent: the first-response clock stops.
		r = h.do(t, http.MethodPost, "/v1/tickets/"+id+"/messages?wait=10s", h.opKey, map[string]any{"body": "We are restoring it now."})
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		var answered support.TicketView
		require.NoError(t, json.Unmarshal(r.command(t).Result, &answered))
		require.NotNil(t, answered.FirstResponseAt)
		require.Equal(t, "met", answered.SLA.FirstResponse.State)

		// Status: customers may not set pending; agents may.
		r = h.do(t, http.MethodPost, "/v1/tickets/"+id+"/status", h.keyA, map[string]any{"status": "pending"})
		require.Equal(t, http.StatusForbidden, r.status, string(r.body))
		require.Equal(t, "status", r.errorOf(t)["field"])
		r = h.do(t, http.MethodPost, "/v1/tickets/"+id+"/status?wait=10s", h.opKey, map[string]any{"status": "pending"})
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		r = h.do(t, http.MethodPost, "/v1/tickets/"+id+"/status", h.opKey, map[string]any{"status": "waiting"})
		require.Equal(t, http.StatusUnprocessableEntity, r.status)
		require.Equal(t, "status", r.errorOf(t)["field"])

		// Lists and filters.
		list := func(key, query string) api.TicketList {
			t.Helper()
			r := h.do(t, http.MethodGet, "/v1/tickets"+query, key, nil)
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			var l api.TicketList
			r.json(t, &l)
			return l
		}
		require.Len(t, list(h.keyA, "").Data, 1)
		require.Len(t, list(h.keyA, "?status=pending&queue=priority&breached=false").Data, 1)
		require.Empty(t, list(h.keyA, "?status=open").Data)
		require.Empty(t, list(h.keyA, "?breached=true").Data)
		require.Len(t, list(h.opKey, "?account_id="+h.accA).Data, 1)
		for _, q := range []string{"?status=waiting", "?breached=yes", "?queue=Bad%20Queue", "?cursor=xyz", "?limit=0", "?sort=new"} {
			r := h.do(t, http.MethodGet, "/v1/tickets"+q, h.keyA, nil)
			require.Equal(t, http.StatusBadRequest, r.status, q)
			require.NotEmpty(t, r.errorOf(t)["field"], q)
		}

		// Pages.
		h.openTicket(t, h.keyA, map[string]any{"subject": "Invoice wrong", "body": "Seats are wrong.", "category": "billing"})
		page := list(h.keyA, "?limit=1")
		require.Len(t, page.Data, 1)
		require.NotNil(t, page.NextCursor)
		next := list(h.keyA, "?limit=1&cursor="+*page.NextCursor)
		require.Len(t, next.Data, 1)
		require.Equal(t, id, next.Data[0].ID)
		require.Nil(t, next.NextCursor)

		// Operators must name the account; bad input names the field.
		r = h.do(t, http.MethodPost, "/v1/tickets", h.opKey, map[string]any{"subject": "x", "body": "y"})
		require.Equal(t, http.StatusUnprocessableEntity, r.status)
		require.Equal(t, "account_id", r.errorOf(t)["field"])
		r = h.do(t, http.MethodPost, "/v1/tickets", h.keyA, map[string]any{"subject": "", "body": "y"})
		require.Equal(t, http.StatusUnprocessableEntity, r.status)
		require.Equal(t, "subject", r.errorOf(t)["field"])
		r = h.do(t, http.MethodPost, "/v1/tickets", h.keyA, map[string]any{"subject": "x", "body": "y", "severity": "urgent"})
		require.Equal(t, http.StatusUnprocessableEntity, r.status)
		require.Equal(t, "severity", r.errorOf(t)["field"])
		r = h.do(t, http.MethodPost, "/v1/tickets?wait=10s", h.keyA, map[string]any{"subject": "x", "body": "y", "category": "hardware"})
		require.Equal(t, http.StatusUnprocessableEntity, r.status, string(r.body))
		require.Equal(t, "category", r.command(t).Error.Field, "the worker checks the category against its rules file")
		r = h.do(t, http.MethodPost, "/v1/tickets", h.keyA, map[string]any{"subject": "x", "body": "y", "priority": "p1"})
		require.Equal(t, http.StatusBadRequest, r.status)
		require.Equal(t, "priority", r.errorOf(t)["field"])
		r = h.do(t, http.MethodGet, "/v1/tickets/not-a-ticket", h.keyA, nil)
		require.Equal(t, http.StatusBadRequest, r.status)

		// Tenant isolation: account B sees none of A's tickets, on every
		// endpoint, exactly as if they did not exist.
		unknown := support.TicketIDFor("cmd_aaaaaaaaaaaaaaaaaaaaaaaaaa")
		for _, tc := range []struct {
			method, path string
			body         any
		}{
			{http.MethodGet, "/v1/tickets/" + id, nil},
			{http.MethodPost, "/v1/tickets/" + id + "/messages", map[string]any{"body": "hi"}},
			{http.MethodPost, "/v1/tickets/" + id + "/status", map[string]any{"status": "closed"}},
		} {
			foreign := h.do(t, tc.method, tc.path, h.keyB, tc.body)
			require.Equal(t, http.StatusNotFound, foreign.status, "%s %s", tc.method, tc.path)
			missing := h.do(t, tc.method, "/v1/tickets/"+unknown+tc.path[len("/v1/tickets/")+len(id):], h.keyB, tc.body)
			require.Equal(t, http.StatusNotFound, missing.status)
			require.Equal(t, foreign.errorOf(t)["code"], missing.errorOf(t)["code"])
		}
		require.Empty(t, list(h.keyB, "").Data)
		r = h.do(t, http.MethodGet, "/v1/tickets?account_id="+h.accA, h.keyB, nil)
		require.Equal(t, http.StatusNotFound, r.status)
		r = h.do(t, http.MethodPost, "/v1/tickets", h.keyB, map[string]any{"account_id": h.accA, "subject": "x", "body": "y"})
		require.Equal(t, http.StatusNotFound, r.status)
		require.Equal(t, "account_id", r.errorOf(t)["field"])
		r = h.do(t, http.MethodGet, "/v1/tickets", "", nil)
		require.Equal(t, http.StatusUnauthorized, r.status)
		// Nothing B tried changed A's ticket.
		r = h.do(t, http.MethodGet, "/v1/tickets/"+id, h.opKey, nil)
		r.json(t, &d)
		require.Equal(t, store.TicketPending, d.Status)
		require.Len(t, d.Messages, 2)
	})
}

// TestATicketsConversationIsReadPageByPage: a ticket's view holds its
// first TicketMessagesInView messages and says where the rest go on;
// GET /v1/tickets/{id}/messages reads the conversation page by page, for
// the ticket's own account only.
func TestATicketsConversationIsReadPageByPage(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	h := newHarness(t, st, options{noStripe: true})
	h.subscribe(t, h.accA, catalog.Entitlements{Tier: "enterprise", SLA: "enterprise", StorageGB: 1, Sources: 1})
	h.runWorkers(t, support.WorkerName)
	v := h.openTicket(t, h.keyA, map[string]any{"subject": "Long thread", "body": "first"})
	ctx := t.Context()
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		for i := range api.TicketMessagesInView + 4 {
			if _, err := tx.AppendTicketMessage(ctx, store.TicketMessage{TicketID: v.ID, AccountID: h.accA, Author: store.AuthorAgent,
				Body: "reply " + strconv.Itoa(i)}); err != nil {
				return err
			}
		}
		return nil
	}))
	total := api.TicketMessagesInView + 5

	r := h.do(t, http.MethodGet, "/v1/tickets/"+v.ID, h.keyA, nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var view struct {
		Messages           []store.TicketMessage `json:"messages"`
		MessagesNextCursor *string               `json:"messages_next_cursor"`
	}
	r.json(t, &view)
	require.Len(t, view.Messages, api.TicketMessagesInView)
	require.NotNil(t, view.MessagesNextCursor, "the view says the conversation goes on")

	var all []store.TicketMessage
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		path := "/v1/tickets/" + v.ID + "/messages?limit=40"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := h.do(t, http.MethodGet, path, h.keyA, nil)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		var page api.TicketMessageList
		r.json(t, &page)
		require.LessOrEqual(t, len(page.Data), 40)
		all = append(all, page.Data...)
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	require.Len(t, all, total, "every message once")
	require.Equal(t, "first", all[0].Body)
	require.Equal(t, "reply "+strconv.Itoa(total-2), all[total-1].Body)
	require.Equal(t, view.Messages, all[:api.TicketMessagesInView])

	r = h.do(t, http.MethodGet, "/v1/tickets/"+v.ID+"/messages?limit=500", h.keyA, nil)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, "limit", r.errorOf(t)["field"])
	r = h.do(t, http.MethodGet, "/v1/tickets/"+v.ID+"/messages", h.keyB, nil)
	require.Equal(t, http.StatusNotFound, r.status, "another account's ticket is not there")
}
