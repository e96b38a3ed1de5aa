package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
)

// bulkRun is one run's headline figures.
type bulkRun struct {
	FloorSeconds  float64 `json:"floor_seconds"`
	DaemonSeconds float64 `json:"daemon_seconds"`
	Ratio         float64 `json:"floor_over_daemon"`
	CPUSeconds    float64 `json:"cpu_seconds"`
	PeakRSSMB     float64 `json:"peak_rss_mb"`
}

// medianBulk summarises the runs: floor and daemon seconds are each the
// median over the runs, the ratio is median floor / median daemon, and the
// other fields are those of the run with the median daemon seconds. Every
// run's figures are kept in Runs.
func medianBulk(runs []bulkResult) bulkResult {
	all := make([]bulkRun, len(runs))
	floors := make([]float64, len(runs))
	for i, r := range runs {
		all[i] = bulkRun{FloorSeconds: r.FloorSeconds, DaemonSeconds: r.DaemonSeconds, Ratio: r.Ratio,
			CPUSeconds: r.Usage.CPUSeconds, PeakRSSMB: r.Usage.PeakRSSMB}
		floors[i] = r.FloorSeconds
	}
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b bulkResult) int { return cmp.Compare(a.DaemonSeconds, b.DaemonSeconds) })
	m := sorted[len(sorted)/2]
	slices.Sort(floors)
	m.FloorSeconds = floors[len(floors)/2]
	if m.DaemonSeconds > 0 {
		m.Ratio = m.FloorSeconds / m.DaemonSeconds
	}
	m.Runs = all
	return m
}

// slotStats is what pg_stat_replication_slots counted for one slot.
type slotStats struct {
	SpillTxns   int64 `json:"spill_txns"`
	SpillBytes  int64 `json:"spill_bytes"`
	StreamTxns  int64 `json:"stream_txns"`
	StreamBytes int64 `json:"stream_bytes"`
	TotalBytes  int64 `json:"total_bytes"`
}

// String says how the transaction reached the slot's consumer.
func (st slotStats) String() string {
	mb := func(b int64) string { return fmt.Sprintf("%.0fMB", float64(b)/(1<<20)) }
	switch {
	case st.StreamTxns > 0:
		return "streamed " + mb(st.StreamBytes)
	case st.SpillTxns > 0:
		return "spilled " + mb(st.SpillBytes)
	default:
		return "in memory"
	}
}

// readSlotStats reads pg_stat_replication_slots for slot.
func (s *suite) readSlotStats(ctx context.Context, slot string) (slotStats, error) {
	var st slotStats
	rows, err := query(ctx, s.srv.dbURL, fmt.Sprintf(`SELECT spill_txns, spill_bytes, stream_txns, stream_bytes, total_bytes
		FROM pg_stat_replication_slots WHERE slot_name = '%s'`, slot))
	if err != nil {
		return st, err
	}
	if len(rows) != 1 {
		return st, nil // no statistics yet
	}
	for i, dst := range []*int64{&st.SpillTxns, &st.SpillBytes, &st.StreamTxns, &st.StreamBytes, &st.TotalBytes} {
		if *dst, err = strconv.ParseInt(rows[0][i], 10, 64); err != nil {
			return st, fmt.Errorf("parse slot statistics %q: %w", rows[0], err)
		}
	}
	return st, nil
}
