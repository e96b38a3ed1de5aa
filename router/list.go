package router

// list is an append-only list kept in blocks of listBlock entries. Unlike a
// slice it never copies what it holds to grow past one block, and it wastes
// at most one block: a transaction's lists reach hundreds of thousands of
// entries, and a doubling slice holds up to three times that while it
// grows. The first block grows like a slice, so that a list of a few
// entries is one small allocation.
type list[T any] struct {
	head []T   // entries 0 … listBlock-1
	rest [][]T // the next blocks, full but the last
	n    int
}

const (
	listShift = 12
	listBlock = 1 << listShift // entries per block
)

// add appends v and returns its position.
func (l *list[T]) add(v T) int32 {
	switch last := len(l.rest) - 1; {
	case l.n < listBlock:
		if len(l.head) == cap(l.head) {
			h := make([]T, len(l.head), min(max(4, 2*cap(l.head)), listBlock))
			copy(h, l.head)
			l.head = h
		}
		l.head = append(l.head, v)
	case last < 0 || len(l.rest[last]) == listBlock:
		l.rest = append(l.rest, append(make([]T, 0, listBlock), v))
	default:
		l.rest[last] = append(l.rest[last], v)
	}
	l.n++
	return int32(l.n - 1)
}

// at returns the entry at position i, which it may be changed through.
func (l *list[T]) at(i int32) *T {
	if i < listBlock {
		return &l.head[i]
	}
	return &l.rest[i>>listShift-1][i&(listBlock-1)]
}

// len is the number of entries.
func (l *list[T]) len() int { return l.n }

// each calls fn with every entry in order.
func (l *list[T]) each(fn func(T)) {
	for _, v := range l.head {
		fn(v)
	}
	for _, b := range l.rest {
		for _, v := range b {
			fn(v)
		}
	}
}
