package router

import (
	"hash/maphash"
	"strconv"
	"testing"
)

// Strings whose hashes collide are still told apart: the second one is
// found through the collision map, and a string never added is not found
// even when its hash is taken.
func TestIndex_Collisions(t *testing.T) {
	var x index
	x.byHash = map[uint64]int32{}
	list := []string{"tenant:a:user:1", "tenant:b:user:2", "tenant:c:user:3"}
	at := func(i int32) string { return list[i] }
	const h = 42 // all three share one hash
	for i, s := range list {
		x.addHash(h, s, int32(i))
	}
	for i, s := range list {
		if got := x.findHash(h, []byte(s), at); got != int32(i) {
			t.Errorf("findHash(%q) = %d, want %d", s, got, i)
		}
	}
	if got := x.findHash(h, []byte("tenant:d:user:4"), at); got != -1 {
		t.Errorf("findHash of a string never added = %d, want -1", got)
	}
	if got := x.findHash(h+1, []byte(list[0]), at); got != -1 {
		t.Errorf("findHash under another hash = %d, want -1", got)
	}
}

// The index answers the same before and after it switches from scanning
// to its map, for strings added before and after the switch.
func TestIndex_Switch(t *testing.T) {
	seed := maphash.MakeSeed()
	var x index
	var list []string
	at := func(i int32) string { return list[i] }
	for n := range 3 * linearMax {
		s := "key:" + strconv.Itoa(n)
		if got := x.find(seed, []byte(s), len(list), at); got != -1 {
			t.Fatalf("find(%q) before adding it = %d", s, got)
		}
		list = append(list, s)
		x.add(seed, s, int32(n), len(list), at)
		for i, want := range list {
			if got := x.find(seed, []byte(want), len(list), at); got != int32(i) {
				t.Fatalf("after %d adds: find(%q) = %d, want %d", n+1, want, got, i)
			}
		}
	}
	if x.byHash == nil {
		t.Fatalf("no map after %d entries", len(list))
	}
}
