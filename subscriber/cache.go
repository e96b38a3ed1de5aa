package subscriber

import (
	"context"
	"fmt"
	"sync"
)

// Cache is an in-process least-recently-used cache of values by Redis key
// name, safe for concurrent use, that follows the daemon's invalidations:
//
//	c := subscriber.NewCache(10_000)
//	s, err := subscriber.New(subscriber.Config{
//		Client:    rdb,
//		OnMessage: c.Apply,
//		OnResync:  c.Resync,
//	})
//
// It holds at most its capacity of entries; adding one more evicts the least
// recently used (Get and Set count as use). Keys are the names of the Redis
// keys the values were read from, since those are what messages name.
//
// Filling the cache races with invalidation: a value read from the source of
// truth just before a change commits can be stored just after the change's
// message was applied, and would then be stale until evicted. Fill with
// GetOrLoad to close that window per key (or, coarser, take a Generation
// before reading and store with SetIfGeneration); keys of a rule with a
// namespace with GetOrLoadInNamespace.
type Cache struct {
	mu         sync.Mutex
	capacity   int
	items      map[string]*entry
	root       entry // sentinel of a circular list; root.next is the most recent
	generation uint64
	// pending are the keys GetOrLoad is loading, with their leases.
	pending map[string]*pendingFill
	// byNS indexes the entries GetOrLoadInNamespace stored by namespace.
	byNS map[string]map[*entry]struct{}
	// clears counts the invalidations of everything (Clear, Resync, a
	// message of an unknown version); each voids every pending fill.
	clears uint64
	fills  CacheFillStats
}

// pendingFill is the lease state of one key that GetOrLoad calls are
// loading: byKey counts the invalidations that named the key (a message,
// Delete), byPattern those by a pattern that matched it, byNamespace the
// bumps of its namespace.
type pendingFill struct {
	byKey, byPattern, byNamespace uint64
	refs                          int
	// ns is the namespace the fills are for ("" for none); anyNS when
	// calls disagree on it, and then any namespace's bump voids them
	ns string
}

// anyNS marks a pending fill voided by a bump of any namespace.
const anyNS = "\x00any"

// entry is a node of Cache's recency list.
type entry struct {
	key        string
	ns         string // its namespace, "" for none
	value      any
	prev, next *entry
}

// NewCache returns an empty Cache holding at most capacity entries. It
// panics if capacity is less than 1.
func NewCache(capacity int) *Cache {
	if capacity < 1 {
		panic("subscriber: NewCache: capacity must be at least 1")
	}
	c := &Cache{capacity: capacity, items: make(map[string]*entry), pending: make(map[string]*pendingFill),
		byNS: make(map[string]map[*entry]struct{})}
	c.root.next, c.root.prev = &c.root, &c.root
	return c
}

// Get returns the value stored under key and whether there was one, and
// marks the entry most recently used.
func (c *Cache) Get(key string) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.moveToFront(e)
	return e.value, true
}

// Set stores value under key as the most recently used entry, evicting the
// least recently used entry if the cache is full.
func (c *Cache) Set(key string, value any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.set(key, "", value)
}

// Generation returns a number that changes whenever entries are invalidated
// (Apply, Invalidate, Resync, Clear, Delete). See SetIfGeneration.
func (c *Cache) Generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.generation
}

// SetIfGeneration stores value under key, as Set does, only if no
// invalidation has been applied since Generation returned gen, and reports
// whether it stored. Use it to fill the cache:
//
//	gen := c.Generation()
//	v := load(key) // from the source of truth
//	c.SetIfGeneration(gen, key, v)
//
// A value read before an invalidation that concerned it is then never
// stored after that invalidation. The check is coarse (any invalidation
// counts), so under a high rate of invalidations most fills are skipped and
// the next Get misses and loads again; GetOrLoad voids a fill only for an
// invalidation of its own key.
func (c *Cache) SetIfGeneration(gen uint64, key string, value any) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.generation != gen {
		return false
	}
	c.set(key, "", value)
	return true
}

// CacheFillStats are counters of the stores of Cache.GetOrLoad and
// GetOrLoadInNamespace. FillsVoided is the sum of the VoidedBy counters,
// which tell why: when several invalidations overlapped one load, a clear
// is counted first, then the key, then a pattern, then a namespace.
type CacheFillStats struct {
	Fills       uint64 // loaded values stored
	FillsVoided uint64 // loaded values not stored: the key was invalidated meanwhile
	// VoidedByKey: a message naming the key, or Delete of it.
	VoidedByKey uint64
	// VoidedByPattern: a message with a pattern that matched the key.
	VoidedByPattern uint64
	// VoidedByResync: everything was invalidated (Resync, Clear, or a
	// message of an unknown version).
	VoidedByResync uint64
	// VoidedByNamespace: a message listing the key's namespace (a rule's
	// wide form under namespace versions), for GetOrLoadInNamespace.
	VoidedByNamespace uint64
}

// FillStats returns the counters of GetOrLoad.
func (c *Cache) FillStats() CacheFillStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.fills
	st.FillsVoided = st.VoidedByKey + st.VoidedByPattern + st.VoidedByResync + st.VoidedByNamespace
	return st
}

// GetOrLoad returns the value stored under key, or else the value load
// returns, which it stores unless key was invalidated while load ran: by
// Delete, by a message naming key or with a pattern matching it
// (MatchPattern), or by Clear, Resync or a message of an unknown version.
// Invalidations of other keys do not prevent the store, so under a high
// rate of changes fills keep succeeding (unlike SetIfGeneration's).
//
// Concurrent calls for the same missing key each call load. An error of
// load is returned wrapped and nothing is stored.
func (c *Cache) GetOrLoad(ctx context.Context, key string, load func(ctx context.Context) (any, error)) (any, error) {
	return c.getOrLoad(ctx, "", key, load)
}

// GetOrLoadInNamespace is GetOrLoad for a key of the namespace nsKey (the
// version key of a rule with a namespace, as messages name it): the entry
// is also evicted, and a fill in progress voided, by a message whose
// Namespaces list nsKey, the daemon's wide form of such a rule. load is
// typically a Filler's GetInNamespace of the same key and namespace.
func (c *Cache) GetOrLoadInNamespace(ctx context.Context, nsKey, key string, load func(ctx context.Context) (any, error)) (any, error) {
	return c.getOrLoad(ctx, nsKey, key, load)
}

func (c *Cache) getOrLoad(ctx context.Context, ns, key string, load func(ctx context.Context) (any, error)) (any, error) {
	c.mu.Lock()
	if e, ok := c.items[key]; ok {
		c.moveToFront(e)
		c.mu.Unlock()
		return e.value, nil
	}
	p := c.pending[key]
	if p == nil {
		p = &pendingFill{ns: ns}
		c.pending[key] = p
	} else if p.ns != ns {
		p.ns = anyNS
	}
	p.refs++
	byKey, byPattern, byNamespace, clears := p.byKey, p.byPattern, p.byNamespace, c.clears
	c.mu.Unlock()

	v, err := load(ctx)

	c.mu.Lock()
	defer c.mu.Unlock()
	if p.refs--; p.refs == 0 {
		delete(c.pending, key)
	}
	if err != nil {
		return nil, fmt.Errorf("subscriber: load %q: %w", key, err)
	}
	switch {
	case c.clears != clears:
		c.fills.VoidedByResync++
	case p.byKey != byKey:
		c.fills.VoidedByKey++
	case p.byPattern != byPattern:
		c.fills.VoidedByPattern++
	case p.byNamespace != byNamespace:
		c.fills.VoidedByNamespace++
	default:
		c.fills.Fills++
		c.set(key, ns, v)
	}
	return v, nil
}

// voidKey voids the pending fills of key; c.mu is held.
func (c *Cache) voidKey(key string) {
	if p, ok := c.pending[key]; ok {
		p.byKey++
	}
}

// Delete removes key and reports whether it was present.
func (c *Cache) Delete(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generation++
	c.voidKey(key)
	e, ok := c.items[key]
	if ok {
		c.remove(e)
	}
	return ok
}

// Len returns the number of entries.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// Keys returns the keys from the most to the least recently used, without
// changing their order.
func (c *Cache) Keys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.items))
	for e := c.root.next; e != &c.root; e = e.next {
		keys = append(keys, e.key)
	}
	return keys
}

// Clear removes every entry.
func (c *Cache) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generation++
	c.clearAll()
}

// clearAll empties the cache, under c.mu.
func (c *Cache) clearAll() {
	c.clears++
	clear(c.items)
	clear(c.byNS)
	c.root.next, c.root.prev = &c.root, &c.root
}

// Resync clears the cache whatever the reason; it has the signature of
// Config.OnResync.
func (c *Cache) Resync(reason string) {
	c.Clear()
}

// Apply evicts what m invalidates; it has the signature of Config.OnMessage.
// See Invalidate.
func (c *Cache) Apply(m Message) {
	c.Invalidate(m)
}

// Invalidate evicts every entry named in m.Keys, every entry whose key
// matches one of m.Patterns (MatchPattern) and every entry stored by
// GetOrLoadInNamespace in a namespace m.Namespaces lists, and returns how
// many entries it evicted. A message whose V is not MessageVersion (a newer format this
// package cannot interpret) clears the whole cache. A heartbeat evicts
// nothing.
//
// Patterns are matched against every entry, so a message with patterns
// costs time proportional to the number of entries.
func (c *Cache) Invalidate(m Message) int {
	if m.Op == OpHeartbeat && m.V == MessageVersion {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generation++
	if m.V != MessageVersion {
		n := len(c.items)
		c.clearAll()
		return n
	}
	n := 0
	for _, k := range m.Keys {
		c.voidKey(k)
		if e, ok := c.items[k]; ok {
			c.remove(e)
			n++
		}
	}
	for _, ns := range m.Namespaces {
		n += c.bump(ns)
	}
	if len(m.Patterns) == 0 {
		return n
	}
	for k, p := range c.pending {
		if matchAny(m.Patterns, k) {
			p.byPattern++
		}
	}
	for k, e := range c.items {
		if matchAny(m.Patterns, k) {
			c.remove(e) // deleting during range is allowed
			n++
		}
	}
	return n
}

// bump evicts the entries of namespace ns and voids its pending fills;
// c.mu is held.
func (c *Cache) bump(ns string) int {
	for _, p := range c.pending {
		if p.ns == ns || p.ns == anyNS {
			p.byNamespace++
		}
	}
	n := 0
	for e := range c.byNS[ns] {
		c.remove(e)
		n++
	}
	return n
}

// matchAny reports whether key matches one of patterns.
func matchAny(patterns []string, key string) bool {
	for _, p := range patterns {
		if MatchPattern(p, key) {
			return true
		}
	}
	return false
}

// set stores value under key, in namespace ns ("" for none); c.mu is held.
func (c *Cache) set(key, ns string, value any) {
	if e, ok := c.items[key]; ok {
		e.value = value
		if e.ns != ns {
			c.unindex(e)
			e.ns = ns
			c.index(e)
		}
		c.moveToFront(e)
		return
	}
	if len(c.items) >= c.capacity {
		c.remove(c.root.prev)
	}
	e := &entry{key: key, ns: ns, value: value}
	c.items[key] = e
	c.index(e)
	c.insertFront(e)
}

func (c *Cache) remove(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	delete(c.items, e.key)
	c.unindex(e)
}

// index adds e to its namespace's entries, if it has one.
func (c *Cache) index(e *entry) {
	if e.ns == "" {
		return
	}
	set := c.byNS[e.ns]
	if set == nil {
		set = map[*entry]struct{}{}
		c.byNS[e.ns] = set
	}
	set[e] = struct{}{}
}

// unindex removes e from its namespace's entries.
func (c *Cache) unindex(e *entry) {
	if e.ns == "" {
		return
	}
	if set := c.byNS[e.ns]; set != nil {
		delete(set, e)
		if len(set) == 0 {
			delete(c.byNS, e.ns)
		}
	}
}

func (c *Cache) insertFront(e *entry) {
	e.prev, e.next = &c.root, c.root.next
	c.root.next.prev = e
	c.root.next = e
}

func (c *Cache) moveToFront(e *entry) {
	if c.root.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	c.insertFront(e)
}
