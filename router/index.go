package router

import "hash/maphash"

// index finds the position of a string in one of a part's lists (its keys,
// its messages' channels). Up to linearMax entries it scans the list; past
// that it maps each string's hash to its position: a map without pointers,
// which the garbage collector never scans and which is half the size of a
// map keyed by the strings. A string whose hash another one already has (a
// 64-bit collision: practically never) is kept in a second map by itself.
type index struct {
	byHash   map[uint64]int32
	collided map[string]int32
}

// linearMax is how many entries a list is scanned for before it is
// indexed: most transactions touch a row or two, and a map per transaction
// would cost more than it saves.
const linearMax = 8

// find returns the position of b in a list of n strings, at(i) being the
// i-th, or -1.
func (x *index) find(seed maphash.Seed, b []byte, n int, at func(int32) string) int32 {
	if x.byHash == nil {
		for i := range int32(n) {
			if at(i) == string(b) {
				return i
			}
		}
		return -1
	}
	return x.findHash(maphash.Bytes(seed, b), b, at)
}

func (x *index) findHash(h uint64, b []byte, at func(int32) string) int32 {
	i, ok := x.byHash[h]
	if !ok {
		return -1
	}
	if at(i) == string(b) {
		return i
	}
	if j, ok := x.collided[string(b)]; ok {
		return j
	}
	return -1
}

// add records that s, new, is at position i of a list now n long.
func (x *index) add(seed maphash.Seed, s string, i int32, n int, at func(int32) string) {
	if x.byHash == nil {
		if n <= linearMax {
			return
		}
		x.byHash = make(map[uint64]int32, 2*n)
		for j := range int32(n) {
			x.addHash(maphash.String(seed, at(j)), at(j), j)
		}
		return
	}
	x.addHash(maphash.String(seed, s), s, i)
}

func (x *index) addHash(h uint64, s string, i int32) {
	if _, taken := x.byHash[h]; taken {
		if x.collided == nil {
			x.collided = map[string]int32{}
		}
		x.collided[s] = i
		return
	}
	x.byHash[h] = i
}
