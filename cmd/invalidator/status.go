package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/config"
	"github.com/cachewire/invalidator/publisher"
)

const statusHelp = `invalidator status [--json]

Shows the slot (active pid, confirmed LSN, lag in bytes, WAL status) and
the journal's range (entries, first and last LSN and commit time). Exit 0,
or 1 when the slot does not exist (or cannot be read).`

// statusReport is what status prints.
type statusReport struct {
	Slot         string        `json:"slot"`
	Exists       bool          `json:"exists"`
	Active       bool          `json:"active"`
	ActivePID    int           `json:"active_pid,omitempty"`
	ConfirmedLSN string        `json:"confirmed_lsn,omitempty"`
	LagBytes     int64         `json:"lag_bytes"`
	WALStatus    string        `json:"wal_status,omitempty"`
	Journal      journalStatus `json:"journal"`
}

type journalStatus struct {
	Key         string `json:"key"`
	Entries     int64  `json:"entries"`
	FirstLSN    string `json:"first_lsn,omitempty"`
	FirstCommit string `json:"first_commit_time,omitempty"`
	LastLSN     string `json:"last_lsn,omitempty"`
	LastCommit  string `json:"last_commit_time,omitempty"`
	Error       string `json:"error,omitempty"`
}

func statusCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var asJSON bool
	s, code, done := load("status", statusHelp, args, stdout, stderr, func(_ *config.Config, fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	}, (*config.Config).ValidateConnections)
	if done {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rep := statusReport{Slot: s.cfg.Slot}
	conn, err := reachPostgres(ctx, s.cfg)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "invalidator status: %v\n", err)
		return exitProblems
	}
	st, err := cdc.Slot(ctx, conn, s.cfg.Slot)
	_ = conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "invalidator status: %v\n", err)
		return exitProblems
	}
	if st.Exists {
		rep.Exists, rep.Active, rep.ActivePID = true, st.Active, st.ActivePID
		rep.ConfirmedLSN, rep.LagBytes, rep.WALStatus = st.ConfirmedFlushLSN.String(), st.LagBytes(), st.WALStatus
	}
	rep.Journal = readJournalStatus(ctx, s.cfg, publisher.JournalKey(s.rules.ChannelPrefix))

	code = exitOK
	if !rep.Exists {
		// nothing streams from a slot that does not exist: a problem
		code = exitProblems
		_, _ = fmt.Fprintf(stderr, "invalidator status: replication slot %q does not exist: `invalidator setup` creates it (so does `run` unless %s=false)\n",
			rep.Slot, config.Var("CREATE_SLOT"))
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
		return code
	}
	if !rep.Exists {
		_, _ = fmt.Fprintf(stdout, "slot %s: does not exist\n", rep.Slot)
	} else {
		active := "inactive"
		if rep.Active {
			active = fmt.Sprintf("active (pid %d)", rep.ActivePID)
		}
		_, _ = fmt.Fprintf(stdout, "slot %s: %s\n  confirmed LSN  %s\n  lag            %d bytes\n  WAL status     %s\n",
			rep.Slot, active, rep.ConfirmedLSN, rep.LagBytes, rep.WALStatus)
	}
	j := rep.Journal
	switch {
	case j.Error != "":
		_, _ = fmt.Fprintf(stdout, "journal %s: %s\n", j.Key, j.Error)
	case j.Entries == 0:
		_, _ = fmt.Fprintf(stdout, "journal %s: empty\n", j.Key)
	default:
		_, _ = fmt.Fprintf(stdout, "journal %s: %d entries\n  first          %s at %s\n  last           %s at %s\n",
			j.Key, j.Entries, j.FirstLSN, j.FirstCommit, j.LastLSN, j.LastCommit)
	}
	return code
}

func readJournalStatus(ctx context.Context, cfg *config.Config, key string) journalStatus {
	js := journalStatus{Key: key}
	rdb, err := reachRedis(ctx, cfg)
	if err != nil {
		js.Error = err.Error()
		return js
	}
	defer func() { _ = rdb.Close() }()
	n, err := rdb.XLen(ctx, key).Result()
	if err != nil {
		js.Error = "cannot read: " + redactErr(err, cfg)
		return js
	}
	js.Entries = n
	if n == 0 {
		return js
	}
	first, err1 := rdb.XRangeN(ctx, key, "-", "+", 1).Result()
	last, err2 := rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err := errors.Join(err1, err2); err != nil {
		js.Error = "cannot read: " + redactErr(err, cfg)
		return js
	}
	if len(first) > 0 {
		js.FirstLSN, js.FirstCommit = field(first[0], "lsn"), field(first[0], "commit_time")
	}
	if len(last) > 0 {
		js.LastLSN, js.LastCommit = field(last[0], "lsn"), field(last[0], "commit_time")
	}
	return js
}

func field(m redis.XMessage, name string) string {
	s, _ := m.Values[name].(string)
	return s
}
