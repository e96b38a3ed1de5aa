package cdc_test

import (
	"testing"

	"github.com/cachewire/invalidator/cdc"
)

// benchTxn counts changes without keeping them, so that the benchmarks
// measure the decoder alone.
type benchTxn struct{ n int }

func (t *benchTxn) Add(*cdc.Change)   { t.n++ }
func (t *benchTxn) DiscardSub(uint32) {}
func (t *benchTxn) Commit()           {}

// benchDecoder returns a decoder that knows relation 16384 (public.shards)
// and is inside a transaction, so that row changes reach a Txn.
func benchDecoder(b *testing.B) (*cdc.Decoder[*benchTxn], *benchTxn) {
	b.Helper()
	txn := &benchTxn{}
	d := cdc.NewDecoder(func(uint32) *benchTxn { return txn })
	for _, msg := range []msg{relation(16384), begin(0x300, 700)} {
		if _, _, err := d.Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
	return d, txn
}

// BenchmarkDecode decodes one row change per op: allocs/op is allocations
// per change.
func BenchmarkDecode(b *testing.B) {
	const payload = "f3a1c9e07b2d4e5f8a6b1c2d3e4f5a6b" // an md5, as the bench workloads write
	cases := []struct {
		name string
		msg  msg
	}{
		{"insert", m('I').u32(16384).u8('N').tuple(txt("t42"), txt("1234"), txt(payload))},
		// REPLICA IDENTITY DEFAULT, key unchanged: only the new row is sent
		{"update", m('U').u32(16384).u8('N').tuple(txt("t42"), txt("1234"), txt(payload))},
		// REPLICA IDENTITY FULL: old and new row
		{"update-old-full", m('U').u32(16384).u8('O').tuple(txt("t42"), txt("1234"), txt(payload)).
			u8('N').tuple(txt("t42"), txt("1234"), txt(payload[:16]+payload[:16]))},
		{"delete-key", m('D').u32(16384).u8('K').tuple(txt("t42"), txt("1234"), null())},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			d, txn := benchDecoder(b)
			b.SetBytes(int64(len(c.msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := d.Decode(c.msg); err != nil {
					b.Fatal(err)
				}
			}
			if txn.n == 0 {
				b.Fatal("no change reached the transaction")
			}
		})
	}
}

// BenchmarkDecodeTransaction decodes whole single-row transactions
// (BEGIN, UPDATE, COMMIT), the steady workload's shape.
func BenchmarkDecodeTransaction(b *testing.B) {
	upd := m('U').u32(16384).u8('N').tuple(txt("t42"), txt("1234"), txt("f3a1c9e07b2d4e5f8a6b1c2d3e4f5a6b"))
	bg, cm := begin(0x300, 700), commit(0x300, 0x330)
	txn := &benchTxn{}
	d := cdc.NewDecoder(func(uint32) *benchTxn { return txn })
	if _, _, err := d.Decode(relation(16384)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, msg := range []msg{bg, upd} {
			if _, _, err := d.Decode(msg); err != nil {
				b.Fatal(err)
			}
		}
		if _, ok, err := d.Decode(cm); err != nil || !ok {
			b.Fatalf("commit: ok %v, err %v", ok, err)
		}
	}
}
