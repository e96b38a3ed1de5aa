package router

import "hash/maphash"

// strs holds a transaction's rendered keys, channels and subjects back to
// back in chunks of chunkSize bytes. A transaction of a million keys is
// then a few hundred allocations that the garbage collector never scans,
// instead of two million strings: the bulk workload's live heap is what
// sets the daemon's peak memory, and faulting that memory in was a third
// of its CPU.
//
// Full chunks are strings, so that a finished transaction's strings are
// substrings of them, copied once per chunk and never again; the chunk
// being filled is a byte slice, reused from one chunk to the next.
type strs struct {
	done []string // full chunks: chunk i is done[i]
	cur  []byte   // chunk len(done), being filled
	// first backs done until a transaction has more than one chunk: most
	// have one, of a key and a channel
	first [1]string
}

// sref locates one string: n bytes at off in chunk c.
type sref struct{ c, off, n uint32 }

// chunkSize is the size a chunk is filled to; a longer string gets a chunk
// of its own. The first chunk starts at firstChunk bytes and grows.
const (
	chunkSize  = 64 << 10
	firstChunk = 128
)

// add copies b in and returns where it is.
func (s *strs) add(b []byte) sref {
	if len(s.cur) > 0 && len(s.cur)+len(b) > chunkSize {
		s.flush()
	}
	if need := len(s.cur) + len(b); need > cap(s.cur) {
		// grow up to chunkSize and no further (append would round past it,
		// and flush would then drop the buffer instead of reusing it)
		c := max(need, firstChunk, min(2*cap(s.cur), chunkSize))
		s.cur = append(make([]byte, 0, c), s.cur...)
	}
	r := sref{c: uint32(len(s.done)), off: uint32(len(s.cur)), n: uint32(len(b))}
	s.cur = append(s.cur, b...)
	return r
}

func (s *strs) flush() {
	if s.done == nil {
		s.done = s.first[:0]
	}
	s.done = append(s.done, string(s.cur))
	if cap(s.cur) > chunkSize {
		s.cur = nil // a long string's chunk: do not keep it around
	} else {
		s.cur = s.cur[:0]
	}
}

// finish makes every string readable with str; nothing can be added after.
func (s *strs) finish() {
	if len(s.cur) > 0 {
		s.flush()
	}
	s.cur = nil
}

// equal reports whether r holds b.
func (s *strs) equal(r sref, b []byte) bool {
	if int(r.n) != len(b) {
		return false
	}
	if int(r.c) < len(s.done) {
		return s.done[r.c][r.off:r.off+r.n] == string(b)
	}
	return string(s.cur[r.off:r.off+r.n]) == string(b)
}

// hash is r's string's maphash.
func (s *strs) hash(seed maphash.Seed, r sref) uint64 {
	if int(r.c) < len(s.done) {
		return maphash.String(seed, s.done[r.c][r.off:r.off+r.n])
	}
	return maphash.Bytes(seed, s.cur[r.off:r.off+r.n])
}

// str returns r's string, a substring of its chunk, once the chunk is
// full (always, after finish).
func str(chunks []string, r sref) string {
	if r.n == 0 {
		return ""
	}
	return chunks[r.c][r.off : r.off+r.n]
}
