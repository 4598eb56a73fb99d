package ops_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

const operatorToken = "operator-token-for-the-ops-api"

type principalKey struct{}

// operatorOnly stands in for the deployment's operator authorizer: it
// admits the operator token only and tells the API who is calling.
func operatorOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+operatorToken {
			httpjson.Error(w, http.StatusUnauthorized, "unauthenticated", "operator token required", "")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, "operator:ops-team")))
	})
}

func apiServer(t *testing.T, b *bundle) string {
	t.Helper()
	mux := http.NewServeMux()
	ops.NewAPI(b.ops, func(r *http.Request) string {
		p, _ := r.Context().Value(principalKey{}).(string)
		return p
	}).Register(mux.Handle, operatorOnly)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func call(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func errorOf(t *testing.T, body []byte) httpjson.ErrorDetail {
	t.Helper()
	var e httpjson.ErrorBody
	require.NoError(t, json.Unmarshal(body, &e), string(body))
	return e.Error
}

func TestAPI(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, ops.Settings{})
		base := apiServer(t, b)
		b.ensureConsumers()
		bill := b.workers[billingC]
		bill.broken.Store(true)
		b.run(billingC, supportC)
		b.publish("invoice.paid", "evt_api_poison", `{"poison":true}`)
		require.Eventually(t, func() bool { return b.nats.StreamMsgs(t, bus.DLQ) == 1 }, 15*time.Second, 20*time.Millisecond)

		t.Run("EveryRouteNeedsTheOperator", func(t *testing.T) {
			for _, r := range []struct{ method, path string }{
				{"GET", "/admin/consumers"}, {"GET", "/admin/stuck"}, {"GET", "/admin/dlq"}, {"GET", "/admin/dlq/1"},
				{"POST", "/admin/dlq/replay"}, {"POST", "/admin/dlq/purge"}, {"POST", "/admin/replay"},
				{"POST", "/admin/stripe/backfill"}, {"GET", "/admin/audit"},
				{"POST", "/admin/schedule/backup.due/pause"}, {"POST", "/admin/consumers/" + billingC + "/resume"},
				{"POST", "/admin/schedule/backup.due/backfill"},
			} {
				code, body := call(t, r.method, base+r.path, "", `{"all":true}`)
				require.Equal(t, http.StatusUnauthorized, code, r.path)
				require.Equal(t, "unauthenticated", errorOf(t, body).Code)
				code, _ = call(t, r.method, base+r.path, "wrong", `{"all":true}`)
				require.Equal(t, http.StatusUnauthorized, code, r.path)
			}
			require.EqualValues(t, 1, b.nats.StreamMsgs(t, bus.DLQ), "nothing was purged or replayed")
			entries, err := st.ListAudit(t.Context(), store.ListAuditParams{})
			require.NoError(t, err)
			require.Empty(t, entries)
		})

		t.Run("BackfillASchedule", func(t *testing.T) {
			code, body := call(t, "POST", base+"/admin/schedule/backup.overdue/backfill", operatorToken, `{"since":"50m","until":"1m"}`)
			require.Equal(t, http.StatusOK, code, string(body))
			var res scheduler.BackfillResult
			require.NoError(t, json.Unmarshal(body, &res))
			require.GreaterOrEqual(t, len(res.Published), 3, "every 15 minutes over 49 minutes")
			code, body = call(t, "POST", base+"/admin/schedule/backup.overdue/backfill", operatorToken, `{"since":"50m","until":"1m"}`)
			require.Equal(t, http.StatusOK, code, string(body))
			require.NoError(t, json.Unmarshal(body, &res))
			require.Empty(t, res.Published, "a second backfill publishes nothing")
		})

		t.Run("PauseAndResumeAConsumer", func(t *testing.T) {
			code, body := call(t, "POST", base+"/admin/consumers/"+supportC+"/pause", operatorToken, `{"reason":"reindexing"}`)
			require.Equal(t, http.StatusOK, code, string(body))
			require.JSONEq(t, `{"key":"consumer.`+supportC+`","paused":true,"changed":true}`, string(body))
			code, body = call(t, "GET", base+"/admin/consumers", operatorToken, "")
			require.Equal(t, http.StatusOK, code)
			var rep ops.Report
			require.NoError(t, json.Unmarshal(body, &rep))
			require.Equal(t, "operator:ops-team", rep.Paused["consumer."+supportC].By, "the audit trail's actor")
			require.Equal(t, "reindexing", rep.Paused["consumer."+supportC].Reason)
			code, body = call(t, "POST", base+"/admin/consumers/"+supportC+"/resume", operatorToken, "")
			require.Equal(t, http.StatusOK, code, string(body))
			require.JSONEq(t, `{"key":"consumer.`+supportC+`","paused":false,"changed":true}`, string(body))
		})

		t.Run("Consumers", func(t *testing.T) {
			code, body := call(t, "GET", base+"/admin/consumers", operatorToken, "")
			require.Equal(t, http.StatusOK, code, string(body))
			var rep ops.Report
			require.NoError(t, json.Unmarshal(body, &rep))
			require.Len(t, rep.Consumers, 2)
			require.Equal(t, billingC, rep.Consumers[0].Name)
			require.EqualValues(t, 1, rep.Consumers[0].DeadLetters)
			var raw map[string]any
			require.NoError(t, json.Unmarshal(body, &raw))
			require.Contains(t, raw["thresholds"], "stuck_age_seconds")
		})

		var seq uint64
		t.Run("ListAndShow", func(t *testing.T) {
			code, body := call(t, "GET", base+"/admin/dlq?consumer="+billingC+"&reason=amount_due&since=1h", operatorToken, "")
			require.Equal(t, http.StatusOK, code, string(body))
			var list ops.DLQList
			require.NoError(t, json.Unmarshal(body, &list))
			require.Equal(t, 1, list.Total)
			seq = list.DeadLetters[0].Seq
			require.Equal(t, "evt_api_poison", list.DeadLetters[0].MsgID)

			code, body = call(t, "GET", base+"/admin/dlq?reason=nothing-like-this", operatorToken, "")
			require.Equal(t, http.StatusOK, code)
			require.JSONEq(t, `{"total":0,"dead_letters":[]}`, string(body))

			code, body = call(t, "GET", base+"/admin/dlq/"+strconv.FormatUint(seq, 10), operatorToken, "")
			require.Equal(t, http.StatusOK, code, string(body))
			var d ops.DeadLetterDetail
			require.NoError(t, json.Unmarshal(body, &d))
			require.JSONEq(t, `{"poison":true}`, string(d.Payload))
		})

		t.Run("BadInputNamesTheField", func(t *testing.T) {
			for name, tc := range map[string]struct {
				method, path, body string
				status             int
				field              string
			}{
				"SeqNotANumber":      {"GET", "/admin/dlq/abc", "", 400, "seq"},
				"UnknownSeq":         {"GET", "/admin/dlq/99999", "", 404, ""},
				"UnknownQuery":       {"GET", "/admin/dlq?consumr=x", "", 400, "consumr"},
				"BadSince":           {"GET", "/admin/dlq?since=yesterday", "", 400, "since"},
				"BadLimit":           {"GET", "/admin/dlq?limit=-1", "", 400, "limit"},
				"UnknownField":       {"POST", "/admin/dlq/replay", `{"sequences":[1]}`, 400, "sequences"},
				"WrongType":          {"POST", "/admin/dlq/purge", `{"seqs":"1"}`, 400, "seqs"},
				"EmptySelection":     {"POST", "/admin/dlq/purge", `{}`, 400, "seqs"},
				"NoBody":             {"POST", "/admin/dlq/purge", ``, 400, "body"},
				"NotJSON":            {"POST", "/admin/dlq/replay", `seqs=1`, 400, "body"},
				"WindowNoConsumer":   {"POST", "/admin/replay", `{"since":"1h"}`, 400, "consumer"},
				"WindowBadUntil":     {"POST", "/admin/replay", `{"consumer":"billing-stripe","since":"1h","until":"soon"}`, 400, "until"},
				"BackfillNoSince":    {"POST", "/admin/stripe/backfill", `{}`, 400, "since"},
				"AuditUnknownFilter": {"GET", "/admin/audit?who=me", "", 400, "who"},
				"PauseUnknownJob":    {"POST", "/admin/schedule/backup.nope/pause", ``, 400, "job"},
				"BackfillUnknownJob": {"POST", "/admin/schedule/backup.nope/backfill", `{"since":"2h","until":"1h"}`, 400, "job"},
				"BackfillNoUntil":    {"POST", "/admin/schedule/backup.overdue/backfill", `{"since":"2h"}`, 400, "until"},
				"BackfillTooOld":     {"POST", "/admin/schedule/backup.overdue/backfill", `{"since":"5d","until":"4d"}`, 400, "since"},
				"BackfillBackwards":  {"POST", "/admin/schedule/backup.overdue/backfill", `{"since":"1h","until":"2h"}`, 400, "until"},
				"PauseNoConsumer":    {"POST", "/admin/consumers/billing-strip/pause", `{"reason":"x"}`, 400, "consumer"},
				"PauseUnknownField":  {"POST", "/admin/consumers/" + billingC + "/pause", `{"why":"x"}`, 400, "why"},
			} {
				t.Run(name, func(t *testing.T) {
					code, body := call(t, tc.method, base+tc.path, operatorToken, tc.body)
					require.Equal(t, tc.status, code, string(body))
					e := errorOf(t, body)
					require.Equal(t, tc.field, e.Field, string(body))
					require.NotEmpty(t, e.Message)
				})
			}
			big := `{"seqs":[` + strings.Repeat("1,", ops.APIMaxBodyBytes/2) + `1]}`
			code, body := call(t, "POST", base+"/admin/dlq/purge", operatorToken, big)
			require.Equal(t, http.StatusRequestEntityTooLarge, code)
			require.Equal(t, "payload_too_large", errorOf(t, body).Code)
			require.EqualValues(t, 1, b.nats.StreamMsgs(t, bus.DLQ), "bad requests change nothing")
		})

		t.Run("ReplayAfterFix", func(t *testing.T) {
			bill.broken.Store(false)
			code, body := call(t, "POST", base+"/admin/dlq/replay", operatorToken,
				`{"all":true,"consumer":"billing-stripe","reason":"amount_due"}`)
			require.Equal(t, http.StatusOK, code, string(body))
			var res ops.DLQResult
			require.NoError(t, json.Unmarshal(body, &res))
			require.Equal(t, 1, res.Succeeded)
			require.Equal(t, seq, res.Items[0].Seq)
			b.waitAcked(billingC)
			require.Equal(t, 1, bill.count("evt_api_poison"))
			require.Zero(t, b.nats.StreamMsgs(t, bus.DLQ))
		})

		t.Run("WindowDryRun", func(t *testing.T) {
			code, body := call(t, "POST", base+"/admin/replay", operatorToken,
				`{"consumer":"billing-stripe","stream":"STRIPE","since":"1h","dry_run":true}`)
			require.Equal(t, http.StatusOK, code, string(body))
			var res ops.WindowResult
			require.NoError(t, json.Unmarshal(body, &res))
			require.Equal(t, 2, res.Selected, "the original and its replay")
			require.Equal(t, 2, res.Skipped)
		})

		t.Run("AuditSaysWho", func(t *testing.T) {
			code, body := call(t, "GET", base+"/admin/audit?limit=10", operatorToken, "")
			require.Equal(t, http.StatusOK, code, string(body))
			var out struct{ Entries []store.AuditEntry }
			require.NoError(t, json.Unmarshal(body, &out))
			var actions []string
			for _, e := range out.Entries {
				require.Equal(t, "operator:ops-team", e.Actor)
				actions = append(actions, e.Action)
			}
			require.Equal(t, []string{ops.ActionReplayWindow, ops.ActionDLQReplay, ops.ActionDLQShow, ops.ActionConsumerResume, ops.ActionConsumerPause,
				ops.ActionScheduleBackfill, ops.ActionScheduleBackfill}, actions)
		})
	})
}

func TestAPIRefusesToMountWithoutAuthorization(t *testing.T) {
	t.Parallel()
	b := setup(t, storeSQLite(t), ops.Settings{})
	require.Panics(t, func() {
		ops.NewAPI(b.ops, func(*http.Request) string { return "x" }).Register(http.NewServeMux().Handle, nil)
	})
	require.Panics(t, func() { ops.NewAPI(b.ops, nil) })
}
