// Package service assembles Levqor's processes from their parts: ingest,
// workers, the scheduler, and dev mode, which runs all of them in one
// process next to an embedded NATS server and a SQLite database. The
// cmd/* mains only read the configuration and call Run*.
package service
