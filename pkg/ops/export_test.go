package ops

// SetWindowBatch makes ReplayWindow look up and publish n messages at a
// time until the returned function restores the default. Tests that call
// it must not run in parallel.
func SetWindowBatch(n int) (restore func()) {
	old := windowBatch
	windowBatch = n
	return func() { windowBatch = old }
}
