package main

import (
	"bufio"
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
	for _, bad := range [][]string{{"-consistency-duration", "1500ms"}, {"-consistency-rounds", "0"}, {"-consistency-readers", "0"}} {
		if _, err := parseOptions(bad, io.Discard); err == nil {
			t.Errorf("parseOptions(%q) accepted", bad)
		}
	}
}
