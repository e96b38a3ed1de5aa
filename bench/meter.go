package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// usage is what one workload cost, between meter.start and meter.stop.
// The daemon's peak RSS is since its start (it is restarted per workload).
type usage struct {
	PeakRSSMB  float64 `json:"peak_rss_mb"`
	CPUSeconds float64 `json:"cpu_seconds"`
	// the other processes on the machine, to tell the daemon's costs from
	// contention: the daemon's walsender, redis-server, and the suite
	// itself (pgbench is not counted)
	WalsenderCPUSeconds float64 `json:"walsender_cpu_seconds"`
	RedisCPUSeconds     float64 `json:"redis_cpu_seconds"`
	SuiteCPUSeconds     float64 `json:"suite_cpu_seconds"`
	// how long the daemon's threads and its walsender were ready to run
	// but waited for a CPU
	WaitedSeconds          float64 `json:"runqueue_wait_seconds"`
	WalsenderWaitedSeconds float64 `json:"walsender_runqueue_wait_seconds"`
	// context switches of the daemon's threads, and of its walsender
	Switches          int64 `json:"context_switches"`
	WalsenderSwitches int64 `json:"walsender_context_switches"`
	// HostBusyPercent is the share of all CPUs that was busy.
	HostBusyPercent float64 `json:"host_busy_percent"`
	// OtherCPUSeconds is the busy CPU time of processes outside the suite's
	// tree (the suite, its servers and their backends, the daemon, pgbench,
	// pg_recvlogical): work by others on a shared machine skews the figures.
	OtherCPUSeconds float64 `json:"other_cpu_seconds"`
	Seconds         float64 `json:"seconds"`
}

// meter samples CPU counters of the daemon, its walsender, redis-server,
// the suite and the host.
type meter struct {
	daemon, walsender, redis int
	before                   sample
	started                  bool
}

type sample struct {
	at                              time.Time
	daemon, walsender, redis, suite procStats
	hostBusy, hostTotal             int64 // jiffies
	tree                            int64 // jiffies of the suite's process tree
}

// newMeter finds the daemon's walsender (the active pid of its slot).
func (s *suite) newMeter(ctx context.Context, d *daemon) (*meter, error) {
	v, err := queryValue(ctx, s.srv.dbURL, fmt.Sprintf("SELECT active_pid FROM pg_replication_slots WHERE slot_name = '%s'", daemonSlot))
	if err != nil {
		return nil, fmt.Errorf("walsender pid: %w", err)
	}
	ws, err := strconv.Atoi(v)
	if err != nil {
		return nil, fmt.Errorf("walsender pid %q: %w", v, err)
	}
	return &meter{daemon: d.pid(), walsender: ws, redis: s.srv.redisPID}, nil
}

func (m *meter) take() (sample, error) {
	var sm sample
	var err error
	sm.at = time.Now()
	for _, p := range []struct {
		pid int
		dst *procStats
	}{{m.daemon, &sm.daemon}, {m.walsender, &sm.walsender}, {m.redis, &sm.redis}, {os.Getpid(), &sm.suite}} {
		if *p.dst, err = readProcStats(p.pid); err != nil {
			return sm, err
		}
	}
	if sm.hostBusy, sm.hostTotal, err = hostCPU(); err != nil {
		return sm, err
	}
	sm.tree, err = treeCPU(os.Getpid())
	return sm, err
}

// start begins the measured window.
func (m *meter) start() error {
	sm, err := m.take()
	if err != nil {
		return err
	}
	m.before, m.started = sm, true
	return nil
}

// stop ends the window and returns the usage.
func (m *meter) stop() (usage, error) {
	after, err := m.take()
	if err != nil {
		return usage{}, err
	}
	b := m.before
	u := usage{
		PeakRSSMB:              float64(after.daemon.PeakRSS) / (1 << 20),
		CPUSeconds:             (after.daemon.CPU - b.daemon.CPU).Seconds(),
		WalsenderCPUSeconds:    (after.walsender.CPU - b.walsender.CPU).Seconds(),
		RedisCPUSeconds:        (after.redis.CPU - b.redis.CPU).Seconds(),
		SuiteCPUSeconds:        (after.suite.CPU - b.suite.CPU).Seconds(),
		WaitedSeconds:          (after.daemon.Waited - b.daemon.Waited).Seconds(),
		WalsenderWaitedSeconds: (after.walsender.Waited - b.walsender.Waited).Seconds(),
		Switches:               after.daemon.Switches - b.daemon.Switches,
		WalsenderSwitches:      after.walsender.Switches - b.walsender.Switches,
		Seconds:                after.at.Sub(b.at).Seconds(),
	}
	if total := after.hostTotal - b.hostTotal; total > 0 {
		u.HostBusyPercent = 100 * float64(after.hostBusy-b.hostBusy) / float64(total)
	}
	other := (after.hostBusy - b.hostBusy) - (after.tree - b.tree)
	u.OtherCPUSeconds = max(0, float64(other)/clockTicks)
	return u, nil
}

// treeCPU returns the CPU time, in jiffies, of root and its descendants:
// utime+stime of the live ones plus cutime+cstime (children already
// reaped) of each. A process that was alive at the first sample and was
// reaped before the second counts its whole life: the figure is an upper
// bound, good enough to tell the suite's work from other work.
func treeCPU(root int) (int64, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("read /proc: %w", err)
	}
	type proc struct{ ppid, cpu int64 }
	procs := map[int64]proc{}
	children := map[int64][]int64{}
	for _, e := range entries {
		pid, err := strconv.ParseInt(e.Name(), 10, 64)
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 15 {
			continue
		}
		// f[1] ppid (field 4); f[11..14] utime stime cutime cstime (14..17)
		var v [5]int64
		for j, k := range []int{1, 11, 12, 13, 14} {
			v[j], _ = strconv.ParseInt(f[k], 10, 64)
		}
		procs[pid] = proc{ppid: v[0], cpu: v[1] + v[2] + v[3] + v[4]}
		children[v[0]] = append(children[v[0]], pid)
	}
	var total int64
	queue := []int64{int64(root)}
	for n := 0; len(queue) > 0 && n < len(procs)+1; n++ {
		pid := queue[0]
		queue = queue[1:]
		total += procs[pid].cpu
		queue = append(queue, children[pid]...)
	}
	return total, nil
}

// hostCPU returns the busy and total jiffies of all CPUs (/proc/stat).
func hostCPU() (busy, total int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("parse /proc/stat: %q", line)
	}
	// user nice system idle iowait irq softirq steal
	for i, v := range f[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse /proc/stat: %q", line)
		}
		total += n
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return busy, total, nil
}
