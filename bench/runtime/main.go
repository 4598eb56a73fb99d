// Command runtime drains a backlog of messages through Levqor's runtime
// alone, with no domain work: JetStream fetches, the router's lanes and
// batches, one transaction per batch that claims every message in the
// inbox (inbox.ClaimBatch, as the billing worker's batches do), acks. It is
// scripts/bench's counterpart of River completing no-op jobs (bench/river)
// on the same database server; see docs/benchmarks.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/inbox"
	"github.com/levqor/levqor/pkg/store"
)

func main() {
	natsURL := flag.String("nats-url", "", "NATS server with JetStream and no Levqor streams")
	dbURL := flag.String("database-url", "", "PostgreSQL URL of an empty database")
	msgs := flag.Int("messages", 100000, "messages to publish and drain")
	lanes := flag.Int("concurrency", 8, "the router's lanes")
	batch := flag.Int("batch-size", bus.BatchSizeDefault, "most messages in a batch")
	flag.Parse()
	if err := run(*natsURL, *dbURL, *msgs, *lanes, *batch); err != nil {
		fmt.Fprintln(os.Stderr, "runtime bench:", err)
		os.Exit(1)
	}
}

func run(natsURL, dbURL string, msgs, lanes, batch int) error {
	ctx := context.Background()
	log := logrus.New()
	log.Out = io.Discard
	st, err := store.Open(ctx, dbURL, log)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	topo := bus.Topology{}.WithDefaults()
	if err := topo.EnsureStreams(ctx, js); err != nil {
		return err
	}

	// The backlog, published with no consumer running. Publishes are
	// acknowledged in windows, as only the drain is timed.
	subject := topo.Subject(bus.Commands, "bench.noop")
	var pending []jetstream.PubAckFuture
	for i := 0; i < msgs; i++ {
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: []byte(`{}`), Header: nats.Header{jetstream.MsgIDHeader: {"noop-" + strconv.Itoa(i)}}})
		if err != nil {
			return err
		}
		pending = append(pending, f)
		if len(pending) == 1000 || i == msgs-1 {
			for _, f := range pending {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					return err
				}
			}
			pending = pending[:0]
		}
	}

	r, err := bus.NewRouter(js, bus.RouterConfig{Topology: topo, Logger: log, Concurrency: lanes, BatchSize: batch})
	if err != nil {
		return err
	}
	var done atomic.Int64
	finished := make(chan struct{})
	r.HandleBatch(bus.ConsumerSpec{Name: "bench-noop", Kind: bus.Commands, Filter: "bench.noop"},
		func(ctx context.Context, ms []*bus.Message, step bus.Step) error {
			err := st.InTx(ctx, func(tx *store.Tx) error {
				run, err := inbox.ClaimBatch(ctx, tx, ms)
				if err != nil {
					return err
				}
				for i, m := range ms {
					_ = step(ctx, m, func(ctx context.Context, m *bus.Message) error {
						if !run[i] {
							inbox.LogDuplicate(ctx)
						}
						return nil
					})
				}
				return nil
			})
			if err == nil && done.Add(int64(len(ms))) >= int64(msgs) {
				select {
				case <-finished:
				default:
					close(finished)
				}
			}
			return err
		}, bus.BatchOptions{})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- r.Run(rctx) }()
	select {
	case <-finished:
	case err := <-errc:
		return fmt.Errorf("router stopped: %v", err)
	}
	elapsed := time.Since(start)
	cancel()
	<-errc
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"messages": msgs, "concurrency": lanes, "batch_size": batch,
		"seconds": elapsed.Seconds(), "messages_per_second": float64(msgs) / elapsed.Seconds(),
	})
}
