package main

import "syscall"

// ownSession is how the suite starts the daemon, pgbench and
// pg_recvlogical: each in a session of its own, with SIGKILL when the
// suite dies.
//
// A session of its own is what each has in use: the daemon runs under
// systemd or in a container, the writers and the floor's reader are
// programs of their own. It matters for the figures: where the kernel
// groups tasks by session for CPU scheduling (sched_autogroup_enabled=1,
// as on this machine), every PostgreSQL backend and walsender has a
// session and so a share of its own (PostgreSQL starts each in one), and
// processes left in the suite's session would split one share between
// them. Until 2026-11-22 they did: the daemon, pgbench, Redis and the
// suite's subscriber shared the share of one backend.
func ownSession() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
}
