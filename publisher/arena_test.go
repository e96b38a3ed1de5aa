package publisher

import (
	"bytes"
	"strconv"
	"testing"
)

// Copies handed out stay intact while later ones are carved, across block
// boundaries; after reset the blocks are reused rather than reallocated.
func TestArena(t *testing.T) {
	var a arena
	var want [][]byte
	var got [][]byte
	for i := range 20_000 { // about 5 blocks
		s := []byte("cache:invalidate:shard:t" + strconv.Itoa(i))
		want = append(want, s)
		got = append(got, a.copy(s))
	}
	big := bytes.Repeat([]byte("x"), arenaBlock)
	bigCopy := a.copy(big)
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("copy %d = %q, want %q", i, got[i], want[i])
		}
		if cap(got[i]) != len(got[i]) {
			t.Fatalf("copy %d has spare capacity %d: an append to it would write into the next copy", i, cap(got[i])-len(got[i]))
		}
	}
	if !bytes.Equal(bigCopy, big) || &bigCopy[0] == &big[0] {
		t.Fatal("a large string was not copied on its own")
	}
	blocks := len(a.blocks)
	if blocks < 2 {
		t.Fatalf("%d blocks after %d bytes, want several", blocks, 20_000*25)
	}
	first := &a.blocks[0][:1][0]
	a.reset()
	again := a.copy([]byte("x"))
	if &again[0] != first {
		t.Error("reset did not reuse the first block")
	}
	if len(a.blocks) != blocks {
		t.Errorf("reset kept %d blocks, want %d", len(a.blocks), blocks)
	}
}
