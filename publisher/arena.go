package publisher

// arena hands out copies of short byte strings carved from shared blocks:
// a pipeline of thousands of messages then costs no allocation per message
// and channel. A copy is not written again until reset, so it can be handed
// to a command until the command is sent.
type arena struct {
	blocks [][]byte // blocks[cur] is being carved; earlier ones are full
	cur    int
}

// arenaBlock is the size of one block; a string of more than a quarter of
// it gets its own allocation.
const arenaBlock = 64 << 10

// arenaKeep bounds the blocks kept for reuse across resets (1 MiB).
const arenaKeep = 16

// copy returns a copy of b that nothing else writes to until reset.
func (a *arena) copy(b []byte) []byte {
	if len(b) > arenaBlock/4 {
		return append([]byte(nil), b...)
	}
	if len(a.blocks) == 0 {
		a.blocks = append(a.blocks, make([]byte, 0, arenaBlock))
	}
	blk := a.blocks[a.cur]
	if len(b) > cap(blk)-len(blk) {
		a.cur++
		if a.cur == len(a.blocks) {
			a.blocks = append(a.blocks, make([]byte, 0, arenaBlock))
		}
		blk = a.blocks[a.cur][:0]
	}
	start := len(blk)
	blk = append(blk, b...)
	a.blocks[a.cur] = blk
	return blk[start:len(blk):len(blk)]
}

// reset makes the blocks available again: call it only when no command
// holds a copy any more (the pipeline that carried them is done).
func (a *arena) reset() {
	if len(a.blocks) > arenaKeep {
		clear(a.blocks[arenaKeep:])
		a.blocks = a.blocks[:arenaKeep]
	}
	for i := range a.blocks {
		a.blocks[i] = a.blocks[i][:0]
	}
	a.cur = 0
}
