package service

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// listen listens on addr, the value of the variable envVar; a taken
// address fails with a message naming both, so the user knows what to
// change.
func listen(envVar, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, addrInUse(envVar, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("%s=%s: %w", envVar, addr, err)
	}
	return ln, nil
}

// addrInUse says that addr, from envVar, is taken and how to choose
// another.
func addrInUse(envVar, addr string) error {
	return fmt.Errorf("%s=%s: address already in use: another process (perhaps another levqor) listens there; "+
		"stop it, or set %s to a free address (port 0 picks one)", envVar, addr, envVar)
}
