package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

// procStats is a process's CPU time so far and its peak resident set.
type procStats struct {
	CPU     time.Duration
	PeakRSS int64 // bytes, VmHWM
	// Waited is how long its threads were runnable but not running (the
	// run-queue delay of /proc/<pid>/task/*/schedstat; 0 when the kernel
	// keeps no schedstats).
	Waited time.Duration
	// Switches counts its threads' context switches, voluntary or not
	// (the same threads as Waited).
	Switches int64
}

// readProcStats reads /proc/<pid>/stat (utime + stime) and
// /proc/<pid>/status (VmHWM).
func readProcStats(pid int) (procStats, error) {
	var st procStats
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	// the command name (field 2) may hold spaces: fields start after ')'
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return st, fmt.Errorf("parse stat of %d: no ')'", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return st, fmt.Errorf("parse stat of %d: %d fields", pid, len(f))
	}
	// f[0] is field 3 (state): utime is field 14, stime field 15
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return st, fmt.Errorf("parse utime/stime of %d: %q %q", pid, f[11], f[12])
	}
	st.CPU = time.Duration(utime+stime) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, fmt.Errorf("read status of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return st, fmt.Errorf("parse VmHWM of %d: %q", pid, v)
			}
			st.PeakRSS = kb * 1024
		}
	}
	st.Waited, st.Switches = threadSched(pid)
	return st, nil
}

// threadSched sums, over pid's threads, the run-queue delay (the second
// field of schedstat, in ns) and the context switches (voluntary and not,
// from status). Threads that exited are not counted; a thread that exits
// while this reads is skipped.
func threadSched(pid int) (waited time.Duration, switches int64) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, 0
	}
	for _, t := range tasks {
		dir := fmt.Sprintf("/proc/%d/task/%s/", pid, t.Name())
		if b, err := os.ReadFile(dir + "schedstat"); err == nil {
			if f := strings.Fields(string(b)); len(f) == 3 {
				if ns, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					waited += time.Duration(ns)
				}
			}
		}
		b, err := os.ReadFile(dir + "status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			name, v, ok := strings.Cut(line, ":")
			if ok && (name == "voluntary_ctxt_switches" || name == "nonvoluntary_ctxt_switches") {
				if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
					switches += n
				}
			}
		}
	}
	return waited, switches
}
