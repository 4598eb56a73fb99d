package service_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/stripesim"
)

// BenchmarkRunBesideAVerificationFlood measures one account's backup (a
// run now, answered with ?wait) in a dev mode where another account does
// nothing ("quiet") and where it asks for verifications of its snapshot
// without pause, as fast as its API key's rate limit lets it ("flood").
// The ratio of the two is the fairness figure of docs/benchmarks.md: the
// flood may take only its account's share of the backups worker's slots.
//
//	go test -run '^$' -bench BenchmarkRunBesideAVerificationFlood -benchtime 20x ./pkg/service
func BenchmarkRunBesideAVerificationFlood(b *testing.B) {
	for _, flood := range []bool{false, true} {
		name := "quiet"
		if flood {
			name = "flood"
		}
		b.Run(name, func(b *testing.B) {
			d, err := runDev(b, devVars(b.TempDir()))
			require.NoError(b, err)
			c := devClient{info: d.info}
			ctx := context.Background()
			st, err := store.Open(ctx, "sqlite:"+filepath.Join(d.info.DataDir, "levqor.db"), discardLog())
			require.NoError(b, err)
			b.Cleanup(func() { st.Close() })

			// The measured account backs up 1 MiB; the flooding one
			// verifies a snapshot of 128 MiB, so that each verification
			// holds a slot for a while.
			source := func(name string, size int) (acc, src string) {
				code, body := c.do(b, http.MethodPost, "/v1/accounts?wait=15s", map[string]string{"name": name, "contact_email": "ops@" + name + ".example"})
				require.Equal(b, http.StatusCreated, code, string(body))
				var a struct {
					Result struct {
						ID               string `json:"id"`
						StripeCustomerID string `json:"stripe_customer_id"`
					}
				}
				require.NoError(b, json.Unmarshal(body, &a))
				c.webhook(b, "customer.subscription.created", stripesim.EventOptions{Created: time.Now().Add(-time.Minute),
					Customer: a.Result.StripeCustomerID, Price: "price_levqor_enterprise_monthly"})
				require.Eventually(b, func() bool { return c.billing(b, a.Result.ID).Tier != nil }, 20*time.Second, 50*time.Millisecond)
				dir := b.TempDir()
				data := make([]byte, size)
				_, _ = rand.Read(data)
				require.NoError(b, os.WriteFile(filepath.Join(dir, "data.bin"), data, 0o600))
				code, body = c.do(b, http.MethodPost, "/v1/sources?wait=15s", map[string]any{
					"account_id": a.Result.ID, "name": name + "-files", "kind": "directory", "schedule": "0 2 * * *", "config": map[string]string{"path": dir},
				})
				require.Equal(b, http.StatusCreated, code, string(body))
				var s struct{ Result struct{ ID string } }
				require.NoError(b, json.Unmarshal(body, &s))
				return a.Result.ID, s.Result.ID
			}
			run := func(src string) string {
				code, body := c.do(b, http.MethodPost, "/v1/sources/"+src+"/runs?wait=30s", nil)
				require.Equal(b, http.StatusCreated, code, string(body))
				var r struct {
					Result struct {
						State      string `json:"state"`
						SnapshotID string `json:"snapshot_id"`
					}
				}
				require.NoError(b, json.Unmarshal(body, &r))
				require.Equal(b, "succeeded", r.Result.State, string(body))
				return r.Result.SnapshotID
			}
			_, measured := source("measured", 1<<20)

			var verifications, limited atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			if flood {
				acc, src := source("flooding", 128<<20)
				snap := run(src)
				key, err := auth.GenerateKey()
				require.NoError(b, err)
				require.NoError(b, st.CreateAPIKey(ctx, store.APIKey{ID: key.ID, Hash: key.Hash, Prefix: key.Prefix, Name: "flood", AccountID: acc}))
				for range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							select {
							case <-stop:
								return
							default:
							}
							req, _ := http.NewRequest(http.MethodPost, d.info.IngestURL+"/v1/snapshots/"+snap+"/verify", bytes.NewReader(nil))
							req.Header.Set("Authorization", "Bearer "+key.Secret)
							resp, err := http.DefaultClient.Do(req)
							if err != nil {
								continue
							}
							_, _ = io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							switch resp.StatusCode {
							case http.StatusAccepted, http.StatusCreated, http.StatusOK:
								verifications.Add(1)
							case http.StatusTooManyRequests:
								limited.Add(1)
								wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
								time.Sleep(time.Duration(max(wait, 1)) * 100 * time.Millisecond)
							}
						}
					}()
				}
				time.Sleep(2 * time.Second) // the flood fills the queue first
			}

			b.ResetTimer()
			for range b.N {
				run(measured)
				// Paced under the operator key's rate limit, off the clock.
				b.StopTimer()
				time.Sleep(150 * time.Millisecond)
				b.StartTimer()
			}
			b.StopTimer()
			close(stop)
			wg.Wait()
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/run")
			if flood {
				b.ReportMetric(float64(verifications.Load()), "verifications")
				var done int64
				require.NoError(b, st.DB().GetContext(ctx, &done, `SELECT count(*) FROM commands WHERE action = 'verify_snapshot' AND status = 'succeeded'`))
				b.ReportMetric(float64(done), "verified")
				b.ReportMetric(float64(limited.Load()), "rate-limited")
			}
		})
	}
}

func discardLog() *logrus.Logger {
	log := logrus.New()
	log.SetOutput(io.Discard)
	return log
}
