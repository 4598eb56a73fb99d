//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package service

import (
	"errors"
	"os"
	"syscall"
)

// flockSupported reports whether the data dir lock is enforced here.
const flockSupported = true

// tryFlock takes an advisory lock on f without waiting: exclusive or
// shared. It reports false when another open file holds a conflicting
// lock. The kernel releases the lock when the process ends, however it
// ends, so a crashed dev mode never leaves a stale lock behind.
func tryFlock(f *os.File, exclusive bool) (bool, error) {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

func unflock(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
