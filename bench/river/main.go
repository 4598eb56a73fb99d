// Command river drains a backlog of no-op jobs with River, the Postgres
// job queue, for scripts/bench's comparison with Levqor's runtime (see
// docs/benchmarks.md). It is its own module so that River never becomes a
// dependency of Levqor.
//
// It migrates River's tables into a database, inserts -jobs no-op jobs
// with no worker running, then starts a client tuned for throughput (a
// short fetch cooldown, many workers) and times until every job is
// completed in the database.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

type noopArgs struct{}

func (noopArgs) Kind() string { return "noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

func (*noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

func main() {
	url := flag.String("database-url", "", "PostgreSQL URL of an empty database")
	jobs := flag.Int("jobs", 100000, "jobs to insert and drain")
	workers := flag.Int("workers", 100, "the queue's MaxWorkers")
	cooldown := flag.Duration("fetch-cooldown", time.Millisecond, "River's FetchCooldown")
	poll := flag.Duration("fetch-poll-interval", 50*time.Millisecond, "River's FetchPollInterval")
	conns := flag.Int("pool", 16, "database connections")
	flag.Parse()
	if err := run(*url, *jobs, *workers, *conns, *cooldown, *poll); err != nil {
		fmt.Fprintln(os.Stderr, "river bench:", err)
		os.Exit(1)
	}
}

func run(url string, jobs, workers, conns int, cooldown, poll time.Duration) error {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return err
	}
	cfg.MaxConns = int32(conns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	driver := riverpgxv5.New(pool)
	migrator, err := rivermigrate.New(driver, nil)
	if err != nil {
		return err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}

	ws := river.NewWorkers()
	river.AddWorker(ws, &noopWorker{})
	client, err := river.NewClient(driver, &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}},
		Workers:           ws,
		FetchCooldown:     cooldown,
		FetchPollInterval: poll,
		Logger:            nil,
	})
	if err != nil {
		return err
	}

	// The backlog, inserted with no worker running, as Levqor's drain
	// starts from events already in the stream.
	const chunk = 10000
	for n := 0; n < jobs; n += chunk {
		params := make([]river.InsertManyParams, min(chunk, jobs-n))
		for i := range params {
			params[i] = river.InsertManyParams{Args: noopArgs{}}
		}
		if _, err := client.InsertManyFast(ctx, params); err != nil {
			return fmt.Errorf("inserting jobs: %w", err)
		}
	}

	start := time.Now()
	if err := client.Start(ctx); err != nil {
		return err
	}
	for {
		time.Sleep(20 * time.Millisecond)
		var done int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state = 'completed'`).Scan(&done); err != nil {
			return err
		}
		if done >= jobs {
			break
		}
	}
	elapsed := time.Since(start)
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = client.Stop(stopCtx)
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"jobs": jobs, "workers": workers, "fetch_cooldown": cooldown.String(),
		"seconds": elapsed.Seconds(), "jobs_per_second": float64(jobs) / elapsed.Seconds(),
	})
}
