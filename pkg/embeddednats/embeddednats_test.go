package embeddednats_test

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/embeddednats"
)

func TestRestartKeepsStreams(t *testing.T) {
	t.Parallel()
	srv, err := embeddednats.Start(embeddednats.Options{StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "t.a", []byte("kept"))
	require.NoError(t, err)

	addr := srv.Addr()
	require.NoError(t, srv.Restart())
	require.Equal(t, addr, srv.Addr(), "a restart must keep the address clients know")

	require.Eventually(t, func() bool {
		info, err := js.Stream(ctx, "T")
		return err == nil && info.CachedInfo().State.Msgs == 1
	}, 10*time.Second, 50*time.Millisecond, "the stream and its message survive a restart")
}

func TestStartFailsAtOnceWhenTheAddressIsTaken(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()

	start := time.Now()
	_, err = embeddednats.Start(embeddednats.Options{Addr: taken.Addr().String(), StoreDir: t.TempDir()})
	require.Error(t, err)
	require.Less(t, time.Since(start), 3*time.Second, "a taken port fails fast, not after the ready timeout")
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	require.ErrorContains(t, err, taken.Addr().String()+" is already in use")
}
