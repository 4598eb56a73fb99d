//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package service

import "os"

// flockSupported reports whether the data dir lock is enforced here: not
// on this platform, where two dev modes on one data dir are not detected.
const flockSupported = false

func tryFlock(*os.File, bool) (bool, error) { return true, nil }

func unflock(*os.File) {}
