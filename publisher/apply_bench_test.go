package publisher_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/internal/benchrules"
	"github.com/cachewire/invalidator/internal/testsrv"
	"github.com/cachewire/invalidator/publisher"
	"github.com/cachewire/invalidator/router"
)

// BenchmarkApply measures rendering and applying to a real redis-server
// (appendonly off, as a cache runs): the in-process part of the bulk and
// steady workloads of `make bench`, without PostgreSQL.
func BenchmarkApply(b *testing.B) {
	if testing.Short() {
		b.Skip("needs redis-server")
	}
	srv, err := testsrv.NewRedisWith(testsrv.RedisOptions{Args: []string{"--appendonly", "no"}})
	if err != nil {
		b.Skipf("redis-server: %v", err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	rdb := srv.Client(b)
	rules, err := router.ParseRules("bench.yaml", []byte(benchrules.YAML))
	if err != nil {
		b.Fatal(err)
	}
	rel := cdc.NewRelation("public.shards", []cdc.Column{
		{Name: "tenant_id", Key: true, TypeOID: 25}, {Name: "id", Key: true, TypeOID: 23}, {Name: "payload", TypeOID: 25},
	})
	payload := []byte("f3a1c9e07b2d4e5f8a6b1c2d3e4f5a6b")
	ids := make([][]byte, 200_000)
	for i := range ids {
		ids[i] = []byte(strconv.Itoa(i + 1))
	}
	tenants := make([][]byte, 100)
	for i := range tenants {
		tenants[i] = []byte("t" + strconv.Itoa(i))
	}
	ctx := context.Background()
	pub := publisher.New(rdb, publisher.Config{ChannelPrefix: "cache:invalidate:", Journal: true})
	change := func(n int) *cdc.Change {
		return &cdc.Change{Op: cdc.OpUpdate, Rel: rel, New: cdc.Tuple{
			{Kind: cdc.DatumText, Data: tenants[n%len(tenants)]},
			{Kind: cdc.DatumText, Data: ids[n/len(tenants)]},
			{Kind: cdc.DatumText, Data: payload},
		}}
	}

	b.Run("bulk-200k-rows", func(b *testing.B) {
		rt := router.New(rules, 1_000_000, nil)
		b.ReportAllocs()
		for b.Loop() {
			txn := rt.NewTxn(1)
			for n := range 200_000 {
				txn.Add(change(n))
			}
			txn.Commit()
			batch := []publisher.Applied{{Txn: txn, CommitLSN: 100, EndLSN: 200, Xid: 1, CommitTime: time.Now()}}
			if _, err := pub.Apply(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/200_000, "ns/row")
	})
	b.Run("single-row-batch-1000", func(b *testing.B) {
		rt := router.New(rules, 0, nil)
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			batch := make([]publisher.Applied, 1000)
			for i := range batch {
				txn := rt.NewTxn(uint32(n))
				txn.Add(change(n % 200_000))
				txn.Commit()
				batch[i] = publisher.Applied{Txn: txn, CommitLSN: cdc.LSN(n), EndLSN: cdc.LSN(n + 1), Xid: uint32(n), CommitTime: time.Now()}
				n++
			}
			if _, err := pub.Apply(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/txn")
	})
}
