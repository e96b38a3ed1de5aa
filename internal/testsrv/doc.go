// Package testsrv starts real PostgreSQL, Redis and NATS servers on the
// loopback interface for integration tests, and tears them down afterwards.
//
// Every server runs as a child process of the test binary, in its own
// process group, inside a private temporary directory that holds its data
// and its log. Close (or the testing.TB cleanup registered by the Start*
// helpers) stops the server, kills whatever is left of its processes (the
// process group and every descendant, including PostgreSQL backends, which
// leave the group) and removes the directory. On Linux every child also gets
// SIGKILL from the kernel if the thread of the test binary that started it
// dies, so a crashed or killed test run does not leave servers behind (the
// temporary directory is left in that case). Tests that panic still run
// their cleanups.
//
// Readiness is never a fixed sleep: each helper polls the server with a real
// client (pgconn, a Redis PING, a TCP dial plus the NATS /healthz endpoint)
// until it answers, the child process exits, or a deadline passes; errors
// carry the tail of the server's log.
//
// The package needs the server binaries of the Debian packages
// postgresql-15, redis-server and nats-server, and for PostgreSQL 14, 16, 17
// and 18 (PostgresOptions.Version) the binaries .ci/deps installs under
// PostgresRoot. No Docker is involved.
package testsrv
