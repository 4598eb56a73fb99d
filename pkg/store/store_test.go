package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/schema"
)

// base is a fixed time with sub-microsecond digits, in a zone other than
// UTC, to catch time-zone and precision drift.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("IST", 5*3600+1800))

func claim(t *testing.T, s *store.Store, e store.InboxEntry) bool {
	t.Helper()
	var claimed bool
	err := s.InTx(t.Context(), func(tx *store.Tx) error {
		var err error
		claimed, err = tx.ClaimInbox(t.Context(), e)
		return err
	})
	require.NoError(t, err)
	return claimed
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		require.NoError(t, s.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.InsertStripeEvent(ctx, store.StripeEvent{ID: "evt_keep", Type: "ping", Payload: []byte(`{}`)})
			return err
		}))

		// storetest has migrated once already.
		require.NoError(t, s.Migrate(ctx))
		require.NoError(t, s.Migrate(ctx))

		n, err := s.CountStripeEvents(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 1, n, "migrating again must keep the data")
		var versions int
		require.NoError(t, s.DB().GetContext(ctx, &versions, `SELECT COUNT(*) FROM goose_db_version WHERE version_id > 0`))
		files, err := fs.Glob(schema.FS, s.Dialect()+"/*.sql")
		require.NoError(t, err)
		require.Equal(t, len(files), versions, "each migration recorded once")
	})
}

func TestMigrateConcurrentReplicas(t *testing.T) {
	t.Parallel()
	dbURL := storetest.PostgresURL(t)
	const replicas = 4
	stores := make([]*store.Store, replicas)
	for i := range stores {
		s, err := store.Open(t.Context(), dbURL, storetest.Logger(t))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, s.Close()) })
		stores[i] = s
	}
	errs := make(chan error, replicas)
	for _, s := range stores {
		go func() { errs <- s.Migrate(t.Context()) }()
	}
	for range replicas {
		require.NoError(t, <-errs)
	}
	n, err := stores[0].CountStripeEvents(t.Context())
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestOpen(t *testing.T) {
	t.Parallel()

	t.Run("BadScheme", func(t *testing.T) {
		t.Parallel()
		_, err := store.Open(t.Context(), "mysql://u:secret@localhost/db", nil)
		require.ErrorContains(t, err, "LEVQOR_DATABASE_URL")
		require.ErrorContains(t, err, `"mysql"`)
		require.NotContains(t, err.Error(), "secret")
	})

	t.Run("NoScheme", func(t *testing.T) {
		t.Parallel()
		_, err := store.Open(t.Context(), "levqor.db", nil)
		require.ErrorContains(t, err, "LEVQOR_DATABASE_URL")
	})

	t.Run("SQLiteWithoutPath", func(t *testing.T) {
		t.Parallel()
		_, err := store.Open(t.Context(), "sqlite://", nil)
		require.ErrorContains(t, err, "LEVQOR_DATABASE_URL")
	})

	t.Run("SQLiteSchemes", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		for _, u := range []string{"sqlite:" + dir + "/a.db", "sqlite://" + dir + "/b.db"} {
			s, err := store.Open(t.Context(), u, nil)
			require.NoError(t, err, u)
			require.Equal(t, store.DialectSQLite, s.Dialect())
			var mode string
			require.NoError(t, s.DB().Get(&mode, `PRAGMA journal_mode`))
			require.Equal(t, "wal", mode)
			var fk int
			require.NoError(t, s.DB().Get(&fk, `PRAGMA foreign_keys`))
			require.Equal(t, 1, fk)
			require.NoError(t, s.Ping(t.Context()))
			require.NoError(t, s.Close())
		}
	})

	t.Run("PostgresDownUntilContextEnds", func(t *testing.T) {
		t.Parallel()
		log, hook := logtest.NewNullLogger()
		ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := store.Open(ctx, fmt.Sprintf("postgres://levqor:secret@%s/levqor?sslmode=disable", closedAddr(t)), log)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Less(t, time.Since(start), 3*time.Second, "Open must return soon after ctx ends")
		require.NotContains(t, err.Error(), "secret")

		entries := hook.AllEntries()
		require.GreaterOrEqual(t, len(entries), 2, "each failed attempt is logged")
		for _, e := range entries {
			line, err := e.String()
			require.NoError(t, err)
			require.NotContains(t, line, "secret")
			require.Contains(t, line, "xxxxx")
		}
	})

	t.Run("PostgresAppearsLater", func(t *testing.T) {
		t.Parallel()
		dbURL, err := url.Parse(storetest.PostgresURL(t))
		require.NoError(t, err)
		target := dbURL.Host
		addr := closedAddr(t)
		dbURL.Host = addr

		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		log, hook := logtest.NewNullLogger()
		time.AfterFunc(500*time.Millisecond, func() { proxy(t, addr, target) })

		s, err := store.Open(ctx, dbURL.String(), log)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		require.NotEmpty(t, hook.AllEntries(), "the attempts before the server appeared are logged")
		require.Equal(t, store.DialectPostgres, s.Dialect())
		require.NoError(t, s.Migrate(ctx))
		require.NoError(t, s.Ping(ctx))
	})
}

// closedAddr returns a local address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// proxy forwards TCP connections from addr to target until the test ends,
// standing in for a database server that starts late.
func proxy(t *testing.T, addr, target string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Errorf("proxy: %v", err)
		return
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
			go func() { _, _ = io.Copy(in, out); _ = in.Close() }()
		}
	}()
}

func TestInbox(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		e := store.InboxEntry{Consumer: "billing-stripe", MsgID: "evt_1", Subject: "levqor.stripe.invoice.paid", StreamSeq: 7}

		t.Run("ClaimOnce", func(t *testing.T) {
			require.True(t, claim(t, s, e))
			require.False(t, claim(t, s, e), "a second delivery finds the row")
			other := e
			other.Consumer = "support-stripe"
			require.True(t, claim(t, s, other), "each consumer claims for itself")
		})

		t.Run("RollbackReleasesClaim", func(t *testing.T) {
			e := e
			e.MsgID = "evt_rollback"
			handlerErr := errors.New("stripe 503")
			err := s.InTx(ctx, func(tx *store.Tx) error {
				claimed, err := tx.ClaimInbox(ctx, e)
				require.NoError(t, err)
				require.True(t, claimed)
				return fmt.Errorf("handling: %w", handlerErr)
			})
			require.ErrorIs(t, err, handlerErr)
			require.True(t, claim(t, s, e), "the redelivery claims again")
		})

		t.Run("PanicRollsBack", func(t *testing.T) {
			e := e
			e.MsgID = "evt_panic"
			require.PanicsWithValue(t, "boom", func() {
				_ = s.InTx(ctx, func(tx *store.Tx) error {
					_, err := tx.ClaimInbox(ctx, e)
					require.NoError(t, err)
					panic("boom")
				})
			})
			require.True(t, claim(t, s, e))
		})

		t.Run("RequiresKey", func(t *testing.T) {
			err := s.InTx(ctx, func(tx *store.Tx) error {
				_, err := tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "billing-stripe"})
				return err
			})
			require.ErrorContains(t, err, "msg_id")
		})
	})
}

func TestPruneInbox(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		old := store.InboxEntry{Consumer: "c", MsgID: "old", Subject: "s", ProcessedAt: base.Add(-48 * time.Hour)}
		edge := store.InboxEntry{Consumer: "c", MsgID: "edge", Subject: "s", ProcessedAt: base}
		recent := store.InboxEntry{Consumer: "c", MsgID: "recent", Subject: "s", ProcessedAt: base.Add(time.Hour)}
		for _, e := range []store.InboxEntry{old, edge, recent} {
			require.True(t, claim(t, s, e))
		}

		n, err := s.PruneInbox(t.Context(), base)
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		require.True(t, claim(t, s, old), "pruned row is gone")
		require.False(t, claim(t, s, edge), "a row processed exactly at the cutoff stays")
		require.False(t, claim(t, s, recent))
	})
}

func TestStripeEvent(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		// Whitespace, key order, escapes and non-ASCII as Stripe sent them.
		payload := []byte("{\n  \"id\": \"evt_1\",\n  \"object\":\"event\", \"data\": {\"name\": \"Zo\u00eb \\u00e9\"},\t\"livemode\": false }\n")
		want := store.StripeEvent{
			ID:         "evt_1",
			Type:       "invoice.payment_failed",
			APIVersion: "2024-06-20",
			Livemode:   true,
			Created:    base.Add(-time.Minute),
			ReceivedAt: base,
			RecordedAt: base.Add(time.Second),
			StreamSeq:  1 << 40,
			Payload:    payload,
		}
		insert := func(e store.StripeEvent) bool {
			var inserted bool
			require.NoError(t, s.InTx(ctx, func(tx *store.Tx) error {
				var err error
				inserted, err = tx.InsertStripeEvent(ctx, e)
				return err
			}))
			return inserted
		}

		require.True(t, insert(want))
		dup := want
		dup.Payload = []byte(`{"id":"evt_1"}`)
		dup.Type = "other"
		require.False(t, insert(dup), "Stripe resends; the first copy is kept")

		got, err := s.GetStripeEvent(ctx, "evt_1")
		require.NoError(t, err)
		require.Equal(t, payload, []byte(got.Payload), "payload bytes round-trip exactly")
		require.Equal(t, want.Type, got.Type)
		require.Equal(t, want.APIVersion, got.APIVersion)
		require.True(t, got.Livemode)
		require.Equal(t, want.StreamSeq, got.StreamSeq)
		for name, pair := range map[string][2]time.Time{
			"Created":    {want.Created, got.Created},
			"ReceivedAt": {want.ReceivedAt, got.ReceivedAt},
			"RecordedAt": {want.RecordedAt, got.RecordedAt},
		} {
			require.Equal(t, time.UTC, pair[1].Location(), name)
			require.Equal(t, pair[0].UTC().Truncate(time.Microsecond), pair[1], name)
		}

		n, err := s.CountStripeEvents(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 1, n)

		out, err := json.Marshal(got)
		require.NoError(t, err)
		require.Contains(t, string(out), `"payload":{"id":"evt_1"`, "payload renders as JSON, not base64")
		require.Contains(t, string(out), `"api_version":"2024-06-20"`)

		_, err = s.GetStripeEvent(ctx, "evt_missing")
		require.ErrorIs(t, err, store.ErrNotFound)
	})
}

func TestRecordFailure(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		f := store.Failure{
			Consumer: "billing-cmd", MsgID: "cmd_1", Subject: "levqor.cmd.billing.checkout",
			Stream: "COMMANDS", StreamSeq: 3, Deliveries: 1, Error: "stripe: 502", At: base,
		}
		require.NoError(t, s.RecordFailure(ctx, f))
		f.Deliveries = 5
		f.Error = "invalid \xff utf-8 and a NUL \x00 byte"
		f.DeadLettered = true
		f.StreamSeq = 4
		f.At = base.Add(10 * time.Minute)
		require.NoError(t, s.RecordFailure(ctx, f))

		var row struct {
			Deliveries    int       `db:"deliveries"`
			LastError     string    `db:"last_error"`
			StreamSeq     uint64    `db:"stream_seq"`
			DeadLettered  bool      `db:"dead_lettered"`
			FirstFailedAt time.Time `db:"first_failed_at"`
			LastFailedAt  time.Time `db:"last_failed_at"`
		}
		require.NoError(t, s.DB().GetContext(ctx, &row, s.DB().Rebind(
			`SELECT deliveries, last_error, stream_seq, dead_lettered, first_failed_at, last_failed_at
			 FROM message_failures WHERE consumer = ? AND msg_id = ?`), "billing-cmd", "cmd_1"))
		require.Equal(t, 5, row.Deliveries)
		require.Equal(t, "invalid \uFFFD utf-8 and a NUL  byte", row.LastError)
		require.EqualValues(t, 4, row.StreamSeq)
		require.True(t, row.DeadLettered)
		require.Equal(t, base.UTC().Truncate(time.Microsecond), row.FirstFailedAt.UTC(), "first_failed_at kept")
		require.Equal(t, base.Add(10*time.Minute).UTC().Truncate(time.Microsecond), row.LastFailedAt.UTC(), "last_failed_at updated")

		long := f
		long.MsgID = "cmd_long"
		long.Error = "x" + strings.Repeat("é", store.MaxErrorLength)
		require.NoError(t, s.RecordFailure(ctx, long))
		states, err := s.ConsumerStates(ctx, "cmd_long")
		require.NoError(t, err)
		require.Len(t, states, 1)
		require.LessOrEqual(t, len(states[0].LastError), store.MaxErrorLength)
		require.Greater(t, len(states[0].LastError), store.MaxErrorLength-2)
		require.True(t, utf8.ValidString(states[0].LastError), "cut on a rune boundary")
	})
}

func TestConsumerStates(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		const msgID = "cmd_42"
		failure := func(consumer string, deliveries int, dead bool, at time.Time) {
			require.NoError(t, s.RecordFailure(ctx, store.Failure{
				Consumer: consumer, MsgID: msgID, Subject: "levqor.cmd.billing.checkout", Stream: "COMMANDS",
				Deliveries: deliveries, Error: consumer + " failed", DeadLettered: dead, At: at,
			}))
		}
		failure("support-cmd", 2, false, base)
		failure("retention-cmd", 5, true, base.Add(time.Minute))
		failure("billing-cmd", 1, false, base.Add(-time.Minute))
		require.True(t, claim(t, s, store.InboxEntry{Consumer: "billing-cmd", MsgID: msgID, Subject: "s", ProcessedAt: base}))
		require.True(t, claim(t, s, store.InboxEntry{Consumer: "audit-cmd", MsgID: msgID, Subject: "s", ProcessedAt: base.Add(time.Second)}))
		// Another message's rows must not leak in.
		require.True(t, claim(t, s, store.InboxEntry{Consumer: "zeta-cmd", MsgID: "cmd_other", Subject: "s"}))

		states, err := s.ConsumerStates(ctx, msgID)
		require.NoError(t, err)
		utc := func(t time.Time) *time.Time { u := t.UTC().Truncate(time.Microsecond); return &u }
		require.Equal(t, []store.ConsumerState{
			{Consumer: "audit-cmd", State: store.ConsumerStateProcessed, ProcessedAt: utc(base.Add(time.Second))},
			{
				Consumer: "billing-cmd", State: store.ConsumerStateProcessed, ProcessedAt: utc(base),
				Deliveries: 1, LastError: "billing-cmd failed", LastFailedAt: utc(base.Add(-time.Minute)),
			},
			{
				Consumer: "retention-cmd", State: store.ConsumerStateDeadLettered,
				Deliveries: 5, LastError: "retention-cmd failed", LastFailedAt: utc(base.Add(time.Minute)),
			},
			{
				Consumer: "support-cmd", State: store.ConsumerStateFailing,
				Deliveries: 2, LastError: "support-cmd failed", LastFailedAt: utc(base),
			},
		}, states)

		none, err := s.ConsumerStates(ctx, "cmd_unknown")
		require.NoError(t, err)
		require.Empty(t, none)
	})
}

func TestOutbox(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		enqueue := func(fn func(tx *store.Tx) error) error { return s.InTx(ctx, fn) }

		var ids []int64
		require.NoError(t, enqueue(func(tx *store.Tx) error {
			for i := range 3 {
				id, err := tx.EnqueueOutbox(ctx, store.OutboxMessage{
					Subject:   fmt.Sprintf("levqor.event.billing.e%d", i),
					Headers:   map[string]string{"Levqor-Correlation-Id": fmt.Sprintf("corr-%d", i)},
					Payload:   []byte(fmt.Sprintf(`{"n":%d}`, i)),
					CreatedAt: base,
				})
				if err != nil {
					return err
				}
				ids = append(ids, id)
			}
			return nil
		}))
		require.Len(t, ids, 3)
		require.Less(t, ids[0], ids[1])
		require.Less(t, ids[1], ids[2])

		rollback := errors.New("validation failed")
		err := enqueue(func(tx *store.Tx) error {
			_, err := tx.EnqueueOutbox(ctx, store.OutboxMessage{Subject: "levqor.event.billing.never", Payload: []byte(`{}`)})
			require.NoError(t, err)
			return rollback
		})
		require.ErrorIs(t, err, rollback)

		msgs, err := s.UnpublishedOutbox(ctx, 10)
		require.NoError(t, err)
		require.Len(t, msgs, 3, "committed messages are visible, the rolled-back one is not")
		for i, m := range msgs {
			require.Equal(t, ids[i], m.ID, "ordered by id")
			require.Equal(t, fmt.Sprintf("levqor.event.billing.e%d", i), m.Subject)
			require.Equal(t, map[string]string{"Levqor-Correlation-Id": fmt.Sprintf("corr-%d", i)}, m.Headers)
			require.Equal(t, []byte(fmt.Sprintf(`{"n":%d}`, i)), m.Payload)
			require.Equal(t, base.UTC().Truncate(time.Microsecond), m.CreatedAt)
			require.Nil(t, m.PublishedAt)
		}

		limited, err := s.UnpublishedOutbox(ctx, 2)
		require.NoError(t, err)
		require.Len(t, limited, 2)
		require.Equal(t, ids[0], limited[0].ID)
		_, err = s.UnpublishedOutbox(ctx, 0)
		require.Error(t, err)

		publishedAt := base.Add(time.Hour)
		require.NoError(t, s.MarkOutboxPublished(ctx, ids[:2], publishedAt))
		require.NoError(t, s.MarkOutboxPublished(ctx, ids[:1], publishedAt.Add(time.Hour)), "re-marking keeps the first time")
		require.NoError(t, s.MarkOutboxPublished(ctx, nil, publishedAt))
		msgs, err = s.UnpublishedOutbox(ctx, 10)
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		require.Equal(t, ids[2], msgs[0].ID)

		n, err := s.PruneOutbox(ctx, publishedAt)
		require.NoError(t, err)
		require.Zero(t, n, "published exactly at the cutoff stays")
		n, err = s.PruneOutbox(ctx, publishedAt.Add(time.Minute))
		require.NoError(t, err)
		require.EqualValues(t, 2, n, "re-marking must not have moved the first publication time")
		n, err = s.PruneOutbox(ctx, base.Add(24*365*time.Hour))
		require.NoError(t, err)
		require.Zero(t, n, "unpublished messages are never pruned")
		msgs, err = s.UnpublishedOutbox(ctx, 10)
		require.NoError(t, err)
		require.Len(t, msgs, 1)

		// Ids keep growing after pruning: they are dedupe ids on EVENTS.
		require.NoError(t, enqueue(func(tx *store.Tx) error {
			id, err := tx.EnqueueOutbox(ctx, store.OutboxMessage{Subject: "levqor.event.billing.after"})
			require.Greater(t, id, ids[2])
			return err
		}))
	})
}

func TestMarkOutboxPublishedManyIDs(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		const count = 1234
		ids := make([]int64, 0, count)
		require.NoError(t, s.InTx(ctx, func(tx *store.Tx) error {
			for range count {
				id, err := tx.EnqueueOutbox(ctx, store.OutboxMessage{Subject: "levqor.event.x.y", Payload: []byte(`{}`)})
				if err != nil {
					return err
				}
				ids = append(ids, id)
			}
			return nil
		}))
		require.NoError(t, s.MarkOutboxPublished(ctx, ids, base))
		msgs, err := s.UnpublishedOutbox(ctx, 10)
		require.NoError(t, err)
		require.Empty(t, msgs)
	})
}

func TestConcurrentTransactions(t *testing.T) {
	t.Parallel()
	const workers, perWorker = 8, 25
	run := func(t *testing.T, stores ...*store.Store) {
		ctx := t.Context()
		var wg sync.WaitGroup
		errs := make(chan error, workers*perWorker)
		for w := range workers {
			s := stores[w%len(stores)]
			wg.Go(func() {
				for i := range perWorker {
					msgID := fmt.Sprintf("msg-%d-%d", w, i)
					errs <- s.InTx(ctx, func(tx *store.Tx) error {
						// Every worker also races for one shared message.
						for _, id := range []string{msgID, fmt.Sprintf("shared-%d", i)} {
							if _, err := tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "c", MsgID: id, Subject: "s"}); err != nil {
								return err
							}
						}
						if _, err := tx.InsertStripeEvent(ctx, store.StripeEvent{ID: msgID, Type: "t", Payload: []byte(`{}`)}); err != nil {
							return err
						}
						_, err := tx.EnqueueOutbox(ctx, store.OutboxMessage{Subject: "levqor.event.x." + msgID})
						return err
					})
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		n, err := stores[0].CountStripeEvents(ctx)
		require.NoError(t, err)
		require.EqualValues(t, workers*perWorker, n)
		msgs, err := stores[0].UnpublishedOutbox(ctx, 10*workers*perWorker)
		require.NoError(t, err)
		require.Len(t, msgs, workers*perWorker)
	}

	storetest.Each(t, func(t *testing.T, s *store.Store) { run(t, s) })

	t.Run("TwoSQLiteStoresOnOneFile", func(t *testing.T) {
		// Stands in for two processes sharing the dev database.
		path := t.TempDir() + "/shared.db"
		var stores []*store.Store
		for range 2 {
			s, err := store.Open(t.Context(), "sqlite:"+path, storetest.Logger(t))
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, s.Close()) })
			stores = append(stores, s)
		}
		require.NoError(t, stores[0].Migrate(t.Context()))
		run(t, stores...)
	})
}

func TestSQLiteProcessesShareFile(t *testing.T) {
	t.Parallel()
	// Two stores on one file stand in for two processes, say `levqor dev`
	// and `levqor migrate`. A transaction that reads before it writes must
	// wait for the other's write lock rather than fail with SQLITE_BUSY.
	path := t.TempDir() + "/shared.db"
	var stores []*store.Store
	for range 2 {
		s, err := store.Open(t.Context(), "sqlite:"+path, storetest.Logger(t))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, s.Close()) })
		stores = append(stores, s)
	}
	require.NoError(t, stores[0].Migrate(t.Context()))

	var wg sync.WaitGroup
	errs := make(chan error, 2*50)
	for w, s := range stores {
		wg.Go(func() {
			for i := range 50 {
				errs <- func() error {
					tx, err := s.DB().BeginTxx(t.Context(), nil)
					if err != nil {
						return err
					}
					defer func() { _ = tx.Rollback() }()
					var n int
					if err := tx.Get(&n, `SELECT COUNT(*) FROM inbox`); err != nil {
						return err
					}
					if _, err := tx.Exec(`INSERT INTO inbox (consumer, msg_id, subject, processed_at) VALUES (?, ?, 's', ?)`,
						"c", fmt.Sprintf("m-%d-%d-%d", w, i, n), time.Now()); err != nil {
						return err
					}
					return tx.Commit()
				}()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ in, want string }{
		"Password":         {"postgres://levqor:s3cr%40t@db:5432/levqor?sslmode=disable", "postgres://levqor:xxxxx@db:5432/levqor?sslmode=disable"},
		"NoPassword":       {"postgres://root@127.0.0.1:5432/test?sslmode=disable", "postgres://root@127.0.0.1:5432/test?sslmode=disable"},
		"PasswordInQuery":  {"postgresql://db/levqor?user=u&password=hunter2", "postgresql://db/levqor?password=xxxxx&user=u"},
		"SQLite":           {"sqlite:/var/lib/levqor/levqor.db", "sqlite:/var/lib/levqor/levqor.db"},
		"Unparseable":      {"postgres://u:p@ss%zz@db/x", "postgres://u:xxxxx@ss%zz@db/x"},
		"NotAURL":          {"", ""},
		"EmptyPassword":    {"postgres://u:@db/x", "postgres://u:xxxxx@db/x"},
		"PlainPasswordKey": {"host=db password=hunter2 dbname=x", "host=db password=xxxxx dbname=x"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, store.RedactURL(tc.in))
		})
	}
}

func TestMigrateLogs(t *testing.T) {
	t.Parallel()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	s, err := store.Open(t.Context(), "sqlite:"+t.TempDir()+"/x.db", log)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.NoError(t, s.Migrate(t.Context()))
	require.NotEmpty(t, hook.AllEntries(), "applied migrations are logged")
}
