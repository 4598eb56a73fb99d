package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/levqor/levqor/pkg/config"
)

func init() {
	registerGroup("streams", "apply: create the streams and change them to this configuration's settings (operators only)",
		"streams apply", map[string]commandFunc{"apply": runStreamsApply})
}

const streamsAbout = "The services create the streams that are missing but change none (their NATS users may not: " +
	"a shorter retention purges a stream at once). After changing LEVQOR_STREAM_REPLICAS, a stream's retention or " +
	"LEVQOR_SUBJECT_PREFIX, an operator applies the change with this command, with the operator's NATS credentials; " +
	"the services warn at start about every stream that differs."

func runStreamsApply(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("streams apply", "streams apply", stdout, envBus...).describe(streamsAbout)
	if err := fs.parseNone(args); err != nil {
		return err
	}
	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return err
	}
	if err := cfg.Topology.Validate(); err != nil {
		return fmt.Errorf("LEVQOR_SUBJECT_PREFIX/LEVQOR_STREAM_REPLICAS: %w", err)
	}
	url, natsOpts := cliNATS(cfg, opts)
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name("levqor-cli"), nats.Timeout(5 * time.Second)}, natsOpts...)...)
	if err != nil {
		return fmt.Errorf("connecting to NATS at %s (LEVQOR_NATS_URL): %w", redactNATSURL(url), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	differ, err := cfg.Topology.CreateMissingStreams(cctx, js)
	if err != nil {
		return err
	}
	if len(differ) == 0 {
		fmt.Fprintln(stdout, "every stream exists and matches this configuration")
		return nil
	}
	if err := cfg.Topology.EnsureStreams(cctx, js); err != nil {
		return err
	}
	for _, d := range differ {
		fmt.Fprintf(stdout, "changed %s\n", d)
	}
	return nil
}
