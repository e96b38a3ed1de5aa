package testsrv

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// procEntry is one process as seen in /proc/PID/stat.
type procEntry struct {
	pid   int
	ppid  int
	pgid  int
	state string // "R", "S", "Z", ...
}

// alive reports whether the process still exists and is not a zombie.
// Orphaned children are reparented to PID 1, which may be slow to reap them; a
// zombie holds no ports, files or shared memory, so it counts as gone. A pid
// reused by an unrelated process within the short wait would count as alive,
// which only delays the caller until its deadline.
func (e procEntry) alive() bool {
	cur, ok := readProc(e.pid)
	return ok && cur.state != "Z" && cur.state != "X"
}

// readProc parses /proc/PID/stat.
func readProc(pid int) (procEntry, bool) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procEntry{}, false
	}
	// Format: pid (comm) state ppid pgrp ...; comm may contain spaces and
	// parentheses, so split after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procEntry{}, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 3 {
		return procEntry{}, false
	}
	ppid, err1 := strconv.Atoi(fields[1])
	pgid, err2 := strconv.Atoi(fields[2])
	if err1 != nil || err2 != nil {
		return procEntry{}, false
	}
	return procEntry{pid: pid, ppid: ppid, pgid: pgid, state: fields[0]}, true
}

// listProcs returns every process in /proc.
func listProcs() []procEntry {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var procs []procEntry
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pe, ok := readProc(pid); ok {
			procs = append(procs, pe)
		}
	}
	return procs
}

// freezeTree stops root and all its descendants with SIGSTOP and returns
// them. It scans /proc until a scan finds no new descendant: a process frozen
// after one scan may have forked just before, and the next scan finds that
// child; frozen processes cannot fork, so the loop ends.
func freezeTree(root int) []procEntry {
	rootEntry, ok := readProc(root)
	if !ok {
		return nil
	}
	_ = syscall.Kill(root, syscall.SIGSTOP)
	tree := []procEntry{rootEntry}
	seen := map[int]bool{root: true}
	for {
		found := false
		for _, pe := range listProcs() {
			if seen[pe.pid] || !seen[pe.ppid] {
				continue
			}
			_ = syscall.Kill(pe.pid, syscall.SIGSTOP)
			seen[pe.pid] = true
			tree = append(tree, pe)
			found = true
		}
		if !found {
			return tree
		}
	}
}

// groupAlive reports whether process group pgid has a member that is not a
// zombie.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	for _, pe := range listProcs() {
		if pe.pgid == pgid && pe.state != "Z" && pe.state != "X" {
			return true
		}
	}
	return false
}
