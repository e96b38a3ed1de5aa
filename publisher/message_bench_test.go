package publisher_test

import (
	"testing"
	"time"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/publisher"
	"github.com/cachewire/invalidator/router"
)

// BenchmarkAppendMessage renders one message per op into a reused buffer,
// as the publisher does for every (transaction, channel): allocs/op is
// allocations per change of the bench workloads (one message per row).
func BenchmarkAppendMessage(b *testing.B) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC)
	cases := []struct {
		name string
		msg  router.Message
	}{
		{"update-1-key", router.Message{
			Channel: "shard:t42:1234", Op: cdc.OpUpdate, Table: "public.shards", Rule: "shard-structured",
			Keys: []string{"tenant:t42:shard:1234:structured"},
		}},
		{"wide-form", router.Message{
			Channel: "shard:t42:*", Op: cdc.OpUpdate, Table: "public.shards", Rule: "shard-structured",
			Patterns: []string{"tenant:t42:shard:*:structured"},
		}},
		{"escaped-10-keys", router.Message{
			Channel: "shard:t\"42:1234", Op: cdc.OpDelete, Table: "public.shards", Rule: "shard-structured",
			Keys: []string{
				"tenant:t\"42:shard:1:structured", "tenant:t\"42:shard:2:structured", "tenant:t\"42:shard:3:structured",
				"tenant:t\"42:shard:4:structured", "tenant:t\"42:shard:5:structured", "tenant:t\"42:shard:6:structured",
				"tenant:t\"42:shard:7:structured", "tenant:t\"42:shard:8:structured", "tenant:t\"42:shard:9:structured",
				"tenant:\u00e9t\u00e9:shard:10:structured",
			},
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			buf := publisher.AppendMessage(nil, &c.msg, cdc.LSN(0x1A2B3C4), 1234, at)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = publisher.AppendMessage(buf[:0], &c.msg, cdc.LSN(0x1A2B3C4), 1234, at)
			}
		})
	}
	// a batch: the messages of 1,000 single-row transactions appended one
	// after the other, as the journal entry and the pipeline see them
	b.Run("batch-1000", func(b *testing.B) {
		msgs := make([]router.Message, 1000)
		for i := range msgs {
			msgs[i] = router.Message{Channel: "shard:t42:1234", Op: cdc.OpUpdate, Table: "public.shards",
				Rule: "shard-structured", Keys: []string{"tenant:t42:shard:1234:structured"}}
		}
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			buf = buf[:0]
			for i := range msgs {
				buf = publisher.AppendMessage(buf, &msgs[i], cdc.LSN(0x1A2B3C4+i), uint32(1000+i), at)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(msgs)), "ns/msg")
	})
}
