package netfault_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/netfault"
)

func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					_, _ = c.Write(append(s.Bytes(), '\n'))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err = bufio.NewReader(c).ReadString('\n')
	return err
}

func TestProxyBlocksAndRecovers(t *testing.T) {
	t.Parallel()
	p, err := netfault.Start(echoServer(t))
	require.NoError(t, err)
	defer p.Close()
	require.NoError(t, roundTrip(p.Addr()))

	open, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer open.Close()
	p.Block()
	require.Error(t, roundTrip(p.Addr()), "new connections are refused")
	_ = open.SetReadDeadline(time.Now().Add(time.Second))
	_, err = open.Read(make([]byte, 1))
	require.Error(t, err, "open connections are cut")
	p.Unblock()
	require.NoError(t, roundTrip(p.Addr()))
}
