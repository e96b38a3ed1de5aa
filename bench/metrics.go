package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// daemonMetrics is what the daemon's own /metrics said at the end of a
// workload (it is restarted per workload, so counters start at zero).
// Quantiles are histogram bucket upper bounds: coarse, but they tell a
// slow Redis from a slow daemon.
type daemonMetrics struct {
	Transactions float64 `json:"transactions"`
	Batches      float64 `json:"batches"`
	TxnsPerBatch float64 `json:"transactions_per_batch"`
	// invalidator_apply_seconds: Redis applying one batch
	ApplyP50MS float64 `json:"apply_p50_ms_bucket"`
	ApplyP99MS float64 `json:"apply_p99_ms_bucket"`
	// invalidator_commit_to_publish_seconds: COMMIT to Redis acknowledging
	CommitToAckP99MS float64 `json:"commit_to_ack_p99_ms_bucket"`
}

func (d *daemon) scrapeMetrics(ctx context.Context) (daemonMetrics, error) {
	var m daemonMetrics
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.addr+"/metrics", nil)
	if err != nil {
		return m, fmt.Errorf("metrics request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, fmt.Errorf("get /metrics: %w", err)
	}
	defer resp.Body.Close()
	hist := map[string][][2]float64{} // name -> (le, cumulative count)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			continue
		}
		switch {
		case name == "invalidator_transactions_total":
			m.Transactions = v
		case name == "invalidator_apply_seconds_count":
			m.Batches = v
		case strings.HasSuffix(strings.SplitN(name, "{", 2)[0], "_bucket"):
			base := strings.TrimSuffix(strings.SplitN(name, "{", 2)[0], "_bucket")
			_, le, _ := strings.Cut(name, `le="`)
			le = strings.TrimSuffix(le, `"}`)
			bound, err := strconv.ParseFloat(le, 64) // "+Inf" parses too
			if err != nil {
				continue
			}
			hist[base] = append(hist[base], [2]float64{bound, v})
		}
	}
	if err := sc.Err(); err != nil {
		return m, fmt.Errorf("read /metrics: %w", err)
	}
	if m.Batches > 0 {
		m.TxnsPerBatch = m.Transactions / m.Batches
	}
	m.ApplyP50MS = bucketQuantile(hist["invalidator_apply_seconds"], 0.5) * 1000
	m.ApplyP99MS = bucketQuantile(hist["invalidator_apply_seconds"], 0.99) * 1000
	m.CommitToAckP99MS = bucketQuantile(hist["invalidator_commit_to_publish_seconds"], 0.99) * 1000
	return m, nil
}

// bucketQuantile returns the upper bound of the first bucket holding the
// q-quantile; -1 when it lies beyond the last finite bucket or there is no
// data.
func bucketQuantile(buckets [][2]float64, q float64) float64 {
	if len(buckets) == 0 {
		return -1
	}
	slices.SortFunc(buckets, func(a, b [2]float64) int {
		switch {
		case a[0] < b[0]:
			return -1
		case a[0] > b[0]:
			return 1
		}
		return 0
	})
	total := buckets[len(buckets)-1][1]
	for _, b := range buckets {
		if b[1] >= q*total && total > 0 {
			if math.IsInf(b[0], 1) {
				return -1
			}
			return b[0]
		}
	}
	return -1
}
