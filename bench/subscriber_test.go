package main

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/publisher"
	"github.com/cachewire/invalidator/router"
)

func TestParseMessage_DaemonFormat(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC)
	m := &router.Message{Channel: "shard:t1:42", Op: cdc.OpUpdate, Table: "public.shards", Rule: "r",
		Keys: []string{`tenant:"t1":shard:42`, `a}b,c`}}
	payload := publisher.AppendMessage(nil, m, cdc.LSN(0x1A_2B3C4D5E), 4_000_000_000, at)
	r, ok := parseMessage(payload)
	if !ok {
		t.Fatalf("parseMessage(%s) failed", payload)
	}
	if r.lsn != 0x1A_2B3C4D5E || r.xid != 4_000_000_000 || r.commitUS != at.UnixMicro() {
		t.Errorf("parseMessage(%s) = lsn %X xid %d commit %d; want lsn 1A2B3C4D5E xid 4000000000 commit %d",
			payload, r.lsn, r.xid, r.commitUS, at.UnixMicro())
	}
	if n := testing.AllocsPerRun(100, func() { parseMessage(payload) }); n != 0 {
		t.Errorf("parseMessage allocates %v times", n)
	}
}

func TestParseMessage_Malformed(t *testing.T) {
	good := `{"keys":[],"lsn":"0/10","xid":7,"commit_time":"2026-11-22T10:00:00.000001Z"}`
	if _, ok := parseMessage([]byte(good)); !ok {
		t.Fatalf("parseMessage(%s) failed", good)
	}
	for _, bad := range []string{
		strings.Replace(good, `"0/10"`, `"0-10"`, 1),
		strings.Replace(good, `"0/10"`, `"0/G0"`, 1),
		strings.Replace(good, `"0/10"`, `"100000000/0"`, 1),
		strings.Replace(good, `7`, `-7`, 1),
		strings.Replace(good, `7`, `4294967296`, 1),
		strings.Replace(good, `.000001Z`, `.000001+01:00`, 1),
		strings.Replace(good, `T10`, `X10`, 1),
		`{"keys":[]}`,
		``,
	} {
		if r, ok := parseMessage([]byte(bad)); ok {
			t.Errorf("parseMessage(%s) = %+v, want failure", bad, r)
		}
	}
}

func TestReadPush(t *testing.T) {
	in := "*3\r\n$10\r\npsubscribe\r\n$7\r\nshard:*\r\n:1\r\n" +
		"*4\r\n$8\r\npmessage\r\n$7\r\nshard:*\r\n$9\r\nshard:1:*\r\n$5\r\nhello\r\n" +
		"*4\r\n$8\r\npmessage\r\n$7\r\nshard:*\r\n$7\r\nshard:2\r\n$0\r\n\r\n" +
		"+OK\r\n"
	r := bufio.NewReaderSize(strings.NewReader(in), 64)
	var got []string
	on := func(channel, payload []byte) { got = append(got, string(channel)+"="+string(payload)) }
	for _, want := range []string{"psubscribe", "pmessage", "pmessage"} {
		kind, err := readPush(r, on)
		if err != nil || kind != want {
			t.Fatalf("readPush = %q, %v; want %q", kind, err, want)
		}
	}
	if want := []string{"shard:1:*=hello", "shard:2="}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("messages %q, want %q", got, want)
	}
	if _, err := readPush(r, on); err == nil {
		t.Error("readPush of a status reply: no error")
	}
}

func TestNines(t *testing.T) {
	if n := nines(0, 1000); n != nil {
		t.Errorf("nines(0, 1000) = %v, want none (no stale entry)", *n)
	}
	if n := nines(1, 1000); n == nil || *n < 2.999 || *n > 3.001 {
		t.Errorf("nines(1, 1000) = %v, want 3", n)
	}
}

func TestParseOptions_Consistency(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(o.workloads, wlConsistency) || o.hugeRows != 1_000_000 {
		t.Errorf("defaults: workloads %v, huge rows %d; want consistency in the default run over a million rows", o.workloads, o.hugeRows)
	}
	if o, err = parseOptions([]string{"-workloads", "consistency"}, io.Discard); err != nil || o.hugeRows != 100_000 {
		t.Errorf("-workloads consistency: huge rows %d, %v; want 100000", o.hugeRows, err)
	}
	for _, bad := range [][]string{{"-consistency-duration", "1500ms"}, {"-consistency-rounds", "0"}, {"-consistency-readers", "0"}, {"-consistency-escalations", "-1"}} {
		if _, err := parseOptions(bad, io.Discard); err == nil {
			t.Errorf("parseOptions(%q) accepted", bad)
		}
	}
}

// TestConsistencyEscalation: a run with a plain mode that showed no stale
// entry first doubles its readers up to the bound, then its load delay; and
// only plain modes are named.
func TestConsistencyEscalation(t *testing.T) {
	w := &consistencyWorld{readers: 6, delay: 0, modes: []*cacheMode{
		{name: modePlain, plain: true, stale: 2},
		{name: modeFiller},
		{name: modeLocalSet, plain: true},
		{name: modeLocalLease},
	}}
	if got := w.plainWithoutStale(); !slices.Equal(got, []string{modeLocalSet}) {
		t.Errorf("plainWithoutStale = %q, want only %q", got, modeLocalSet)
	}
	var steps []string
	for range 4 {
		w.escalate()
		steps = append(steps, fmt.Sprintf("%d/%s", w.readers, w.delay))
	}
	if want := []string{"12/0s", "16/0s", "16/1ms", "16/2ms"}; !slices.Equal(steps, want) {
		t.Errorf("escalations (readers/delay) = %q, want %q", steps, want)
	}
	w = &consistencyWorld{readers: 20, delay: 3 * time.Millisecond}
	w.escalate()
	if w.readers != 20 || w.delay != 6*time.Millisecond {
		t.Errorf("with more readers than the bound: %d readers, %s delay; want 20 and 6ms", w.readers, w.delay)
	}
}

// TestWriteTable_ConsistencyWarnsPlainWithoutStale: a run whose plain mode
// showed no stale entry says that its check proved nothing, and misses the
// target.
func TestWriteTable_ConsistencyWarnsPlainWithoutStale(t *testing.T) {
	rep := &report{Consistency: []consistencyResult{{Rate: 2000, Rounds: 10, Readers: 16, LoadDelayMS: 3, Escalations: 1,
		PlainWithoutStale: []string{modeLocalSet},
		Modes: []consistencyMode{{Mode: modePlain, Stale: 3, Checked: 100}, {Mode: modeLocalSet, Checked: 100},
			{Mode: modeLocalLease, Checked: 1000, Misses: 100, Stored: 99, FillSuccess: 0.99, Voids: &fillVoids{ByKey: 1}}}}}}
	rep.Targets = checkTargets(rep)
	var b strings.Builder
	if err := writeTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"WARNING 2000/s: " + modeLocalSet + " showed no stale entry", "made likelier 1 time(s)", ">3.00", "key/pattern/resync 1/0/0"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	missed := 0
	for _, tg := range rep.Targets {
		if !tg.Met {
			missed++
			if !strings.Contains(tg.What, modeLocalSet) {
				t.Errorf("target missed: %s", tg.What)
			}
		}
	}
	if missed != 1 {
		t.Errorf("%d targets missed, want 1 (the plain mode without stale entries): %+v", missed, rep.Targets)
	}
}
