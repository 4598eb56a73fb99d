// Package chaos holds Levqor's fault-injection tests: a sustained webhook
// load while NATS restarts, PostgreSQL becomes unreachable, a worker process
// is killed with SIGKILL and poison events are mixed in. They prove the
// claim "nothing acknowledged is ever lost, nothing is applied twice".
// The package has no code of its own; see chaos_test.go.
package chaos
