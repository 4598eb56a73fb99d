// Package bustest starts what a messaging test needs: an embedded NATS
// server with JetStream on a free port, a connection that reconnects
// forever, and Levqor's streams.
package bustest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/embeddednats"
)

// Env is a running NATS test environment.
type Env struct {
	Server *embeddednats.Server
	NC     *nats.Conn
	JS     jetstream.JetStream
	Topo   bus.Topology
}

// Start launches the server, connects and ensures the streams. Everything
// is torn down in t.Cleanup.
func Start(t testing.TB) *Env {
	t.Helper()
	srv, err := embeddednats.Start(embeddednats.Options{StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	nc := Connect(t, srv.ClientURL())
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	topo := bus.Topology{}.WithDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, topo.EnsureStreams(ctx, js))
	return &Env{Server: srv, NC: nc, JS: js, Topo: topo}
}

// Connect opens a connection that keeps reconnecting while a test restarts
// the server, closed in t.Cleanup.
func Connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.RetryOnFailedConnect(true),
	)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// StreamMsgs returns the number of messages stored in the stream of kind k.
func (e *Env) StreamMsgs(t testing.TB, k bus.Kind) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.JS.Stream(ctx, e.Topo.StreamName(k))
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	return info.State.Msgs
}

// Messages reads every message stored in the stream of kind k, oldest
// first.
func (e *Env) Messages(t testing.TB, k bus.Kind) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.JS.Stream(ctx, e.Topo.StreamName(k))
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		out = append(out, m)
	}
	return out
}
