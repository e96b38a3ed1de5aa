package router

import (
	"hash/maphash"
	"strconv"
	"strings"
	"testing"
)

// Strings whose hashes collide are told apart by their bytes, and a string
// never added is not found even when its hash is taken.
func TestIndex_Collisions(t *testing.T) {
	var s strs
	var refs []sref
	x := index{slots: make([]uint64, 16)}
	const h = 42 // every string shares one hash
	for i, k := range []string{"tenant:a:user:1", "tenant:b:user:2", "tenant:c:user:3"} {
		refs = append(refs, s.add([]byte(k)))
		x.insert(h, int32(i))
	}
	ref := func(i int32) sref { return refs[i] }
	for i, k := range []string{"tenant:a:user:1", "tenant:b:user:2", "tenant:c:user:3"} {
		if got := x.lookup(h, &s, []byte(k), ref); got != int32(i) {
			t.Errorf("lookup(%q) = %d, want %d", k, got, i)
		}
	}
	if got := x.lookup(h, &s, []byte("tenant:d:user:4"), ref); got != -1 {
		t.Errorf("lookup of a string never added = %d, want -1", got)
	}
	if got := x.lookup(h+1, &s, []byte("tenant:a:user:1"), ref); got != -1 {
		t.Errorf("lookup under another hash = %d, want -1", got)
	}
}

// The index answers the same before and after it switches from scanning
// to its table and while the table grows, for strings that are still in
// the chunk being filled and strings in full chunks.
func TestIndex_SwitchAndGrow(t *testing.T) {
	seed := maphash.MakeSeed()
	var s strs
	var x index
	var refs []sref
	ref := func(i int32) sref { return refs[i] }
	pad := strings.Repeat("x", 300) // 2,000 strings span several chunks
	key := func(n int) []byte { return []byte("key:" + strconv.Itoa(n) + pad) }
	const n = 2000
	for i := range n {
		got, h := x.find(seed, &s, key(i), len(refs), ref)
		if got != -1 {
			t.Fatalf("find(key %d) before adding it = %d", i, got)
		}
		refs = append(refs, s.add(key(i)))
		x.add(seed, &s, int32(i), h, len(refs), ref)
		// every earlier key, checked at the switch and at every growth,
		// and a sample in between
		if i <= 2*linearMax || i&(i-1) == 0 || i%97 == 0 {
			for j := range refs {
				if got, _ := x.find(seed, &s, key(j), len(refs), ref); got != int32(j) {
					t.Fatalf("after %d adds: find(key %d) = %d", i+1, j, got)
				}
			}
		}
	}
	if x.slots == nil || x.n != n || x.n*8 > len(x.slots)*7 {
		t.Fatalf("table: %d slots, %d entries", len(x.slots), x.n)
	}
	if len(s.done) == 0 {
		t.Fatal("the test never filled a chunk")
	}
}

// Strings keep their bytes and hash across the move from the chunk being
// filled to a full chunk; a string longer than a chunk gets its own.
func TestStrs(t *testing.T) {
	seed := maphash.MakeSeed()
	var s strs
	var want []string
	var refs []sref
	var hashes []uint64
	for i := range 500 {
		v := strings.Repeat(strconv.Itoa(i), i%7*100)
		if i == 250 {
			v = strings.Repeat("L", chunkSize+1)
		}
		r := s.add([]byte(v))
		if !s.equal(r, []byte(v)) || (len(v) > 0 && s.equal(r, []byte(v[1:]))) {
			t.Fatalf("string %d: equal is wrong right after add", i)
		}
		want, refs, hashes = append(want, v), append(refs, r), append(hashes, s.hash(seed, r))
	}
	if cap(s.cur) > chunkSize {
		t.Errorf("the chunk being filled has %d bytes of capacity, more than a chunk", cap(s.cur))
	}
	for i, r := range refs {
		if !s.equal(r, []byte(want[i])) || s.hash(seed, r) != hashes[i] {
			t.Fatalf("string %d changed once its chunk filled", i)
		}
	}
	s.finish()
	for i, r := range refs {
		if got := str(s.done, r); got != want[i] {
			t.Fatalf("str(%d) = %.20q…, want %.20q…", i, got, want[i])
		}
	}
	for i, c := range s.done {
		if len(c) > chunkSize && len(c) != chunkSize+1 {
			t.Errorf("chunk %d is %d bytes", i, len(c))
		}
	}
}

// A list returns what was added at each position, across the first block
// growing and the blocks after it.
func TestList(t *testing.T) {
	var l list[int64]
	const n = 3*listBlock + 17
	for i := range n {
		if pos := l.add(int64(i) * 3); pos != int32(i) {
			t.Fatalf("add %d returned position %d", i, pos)
		}
	}
	if l.len() != n {
		t.Fatalf("len %d, want %d", l.len(), n)
	}
	*l.at(listBlock) = -1
	var seen []int64
	l.each(func(v int64) { seen = append(seen, v) })
	for i := range n {
		want := int64(i) * 3
		if i == listBlock {
			want = -1
		}
		if got := *l.at(int32(i)); got != want || seen[i] != want {
			t.Fatalf("entry %d: at %d, each %d, want %d", i, got, seen[i], want)
		}
	}
	if len(l.rest) != 3 || cap(l.head) != listBlock {
		t.Errorf("%d blocks after the head (head cap %d), want 3 and %d", len(l.rest), cap(l.head), listBlock)
	}
}
