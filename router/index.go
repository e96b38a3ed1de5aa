package router

import "hash/maphash"

// index finds the position of a string in one of a part's lists (its keys,
// its messages' channels), the strings being in the transaction's strs. Up
// to linearMax entries it scans the list; past that it is an open-addressing
// table of 8 bytes a slot, holding the high 32 bits of each string's hash
// and its position: no pointers for the garbage collector, about a third of
// the memory of a Go map, and growing needs no string re-hashed.
type index struct {
	slots []uint64 // hash<<32 | position+1; 0: empty
	n     int
}

// linearMax is how many entries a list is scanned for before it is
// indexed: most transactions touch a row or two, and a table per
// transaction would cost more than it saves.
const linearMax = 8

// find returns the position of b in a list of n strings whose i-th is at
// ref(i), or -1; and b's hash, which add takes.
func (x *index) find(seed maphash.Seed, s *strs, b []byte, n int, ref func(int32) sref) (int32, uint32) {
	if x.slots == nil {
		for i := range int32(n) {
			if s.equal(ref(i), b) {
				return i, 0
			}
		}
		return -1, 0
	}
	h := uint32(maphash.Bytes(seed, b) >> 32)
	return x.lookup(h, s, b, ref), h
}

// lookup finds b, whose hash is h, in the table.
func (x *index) lookup(h uint32, s *strs, b []byte, ref func(int32) sref) int32 {
	mask := uint32(len(x.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		v := x.slots[i]
		if v == 0 {
			return -1
		}
		if uint32(v>>32) == h {
			if pos := int32(uint32(v) - 1); s.equal(ref(pos), b) {
				return pos
			}
		}
	}
}

// add records that the string at position i, which find did not find and
// hashed to h, is new; the list is now n long.
func (x *index) add(seed maphash.Seed, s *strs, i int32, h uint32, n int, ref func(int32) sref) {
	if x.slots == nil {
		if n <= linearMax {
			return
		}
		x.slots = make([]uint64, 4*linearMax)
		for j := range int32(n) {
			x.insert(uint32(s.hash(seed, ref(j))>>32), j)
		}
		return
	}
	if (x.n+1)*8 > len(x.slots)*7 { // at most 7/8 full
		old := x.slots
		x.slots, x.n = make([]uint64, 2*len(old)), 0
		for _, v := range old {
			if v != 0 {
				x.insert(uint32(v>>32), int32(uint32(v)-1))
			}
		}
	}
	x.insert(h, i)
}

func (x *index) insert(h uint32, pos int32) {
	mask := uint32(len(x.slots) - 1)
	i := h & mask
	for x.slots[i] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = uint64(h)<<32 | uint64(uint32(pos)+1)
	x.n++
}
