package router_test

import (
	"encoding/binary"
	"strconv"
	"testing"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/internal/benchrules"
	"github.com/cachewire/invalidator/router"
)

// benchShards decodes the Relation message of
// public.shards(tenant_id key, id key, payload), as the daemon gets it.
func benchShards(b *testing.B) *cdc.Relation {
	b.Helper()
	msg := []byte{'R'}
	msg = binary.BigEndian.AppendUint32(msg, 16384)
	msg = append(msg, "public\x00shards\x00d"...)
	msg = binary.BigEndian.AppendUint16(msg, 3)
	for _, c := range []struct {
		name string
		key  bool
		oid  uint32
	}{{"tenant_id", true, 25}, {"id", true, 23}, {"payload", false, 25}} {
		var flags byte
		if c.key {
			flags = 1
		}
		msg = append(msg, flags)
		msg = append(append(msg, c.name...), 0)
		msg = binary.BigEndian.AppendUint32(msg, c.oid)
		msg = binary.BigEndian.AppendUint32(msg, 0xFFFFFFFF)
	}
	d := cdc.NewDecoder(func(uint32) *router.Txn { return nil })
	if _, _, err := d.Decode(msg); err != nil {
		b.Fatalf("decode relation: %v", err)
	}
	return d.Relation(16384)
}

func benchRouter(b *testing.B, maxKeys int) *router.Router {
	b.Helper()
	rules, err := router.ParseRules("bench.yaml", []byte(benchrules.YAML))
	if err != nil {
		b.Fatal(err)
	}
	return router.New(rules, maxKeys, nil)
}

// benchUpdate is an UPDATE under REPLICA IDENTITY DEFAULT (new row only).
func benchUpdate(rel *cdc.Relation, tenant, id []byte) *cdc.Change {
	return &cdc.Change{Op: cdc.OpUpdate, Rel: rel, New: cdc.Tuple{
		{Kind: cdc.DatumText, Data: tenant},
		{Kind: cdc.DatumText, Data: id},
		{Kind: cdc.DatumText, Data: []byte("f3a1c9e07b2d4e5f8a6b1c2d3e4f5a6b")},
	}}
}

// BenchmarkTxnAdd measures rendering: one Txn.Add of an UPDATE per op, so
// allocs/op is allocations per change.
func BenchmarkTxnAdd(b *testing.B) {
	// single-row transactions, the steady workload: a new Txn, one change,
	// and its Result, per op
	b.Run("single-row-txn", func(b *testing.B) {
		rel := benchShards(b)
		rt := benchRouter(b, 0)
		c := benchUpdate(rel, []byte("t42"), []byte("1234"))
		b.ReportAllocs()
		xid := uint32(0)
		for b.Loop() {
			xid++
			txn := rt.NewTxn(xid)
			txn.Add(c)
			txn.Commit()
			if res := txn.Result(); len(res.Keys) != 1 || res.NumMessages() != 1 {
				b.Fatalf("result %+v", res)
			}
		}
	})

	// one large transaction of distinct rows, the bulk workload: a new Txn
	// every 200,000 changes (amortised), every change a new key and channel
	b.Run("bulk-distinct-rows", func(b *testing.B) {
		const rows = 200_000
		rel := benchShards(b)
		rt := benchRouter(b, 1_000_000)
		tenants := make([][]byte, 100)
		for i := range tenants {
			tenants[i] = []byte("t" + strconv.Itoa(i))
		}
		ids := make([][]byte, rows/len(tenants))
		for i := range ids {
			ids[i] = []byte(strconv.Itoa(i + 1))
		}
		c := benchUpdate(rel, nil, nil)
		b.ReportAllocs()
		txn, n := rt.NewTxn(1), 0
		for b.Loop() {
			if n == rows {
				txn, n = rt.NewTxn(1), 0
			}
			c.New[0].Data, c.New[1].Data = tenants[n%len(tenants)], ids[n/len(tenants)]
			txn.Add(c)
			n++
		}
	})

	// the same row over and over in one transaction: the de-duplication path
	b.Run("bulk-same-row", func(b *testing.B) {
		rel := benchShards(b)
		rt := benchRouter(b, 0)
		c := benchUpdate(rel, []byte("t42"), []byte("1234"))
		txn := rt.NewTxn(1)
		b.ReportAllocs()
		for b.Loop() {
			txn.Add(c)
		}
		txn.Commit()
		if res := txn.Result(); len(res.Keys) != 1 {
			b.Fatalf("result %+v", res)
		}
	})
}
