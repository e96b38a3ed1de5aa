package subscriber

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/internal/backoff"
)

// LeaseMarkerPrefix starts every lease marker a Filler writes into a key
// while it loads the key's value. A reader of the same keys that does not use
// a Filler must treat a value that starts with it as a miss (and must not
// overwrite it: that would defeat the lease). It starts with a NUL byte, so
// no text, JSON or protobuf value starts with it.
const LeaseMarkerPrefix = "\x00invalidator:lease:"

// FillConfig configures a Filler.
type FillConfig struct {
	// TTL is the lifetime of a stored value; 0 stores values without
	// expiry. Redis counts it in whole milliseconds (PX), so it must be 0 or
	// at least 1ms; a fraction of a millisecond is dropped.
	TTL time.Duration
	// LeaseTTL is the lifetime of a lease: a load that takes longer loses
	// its lease and its value is not stored. It must be at least 1ms (PX
	// counts whole milliseconds).
	LeaseTTL time.Duration
	// Wait is how long a reader that finds another reader's lease polls
	// for the value before it loads by itself (without storing). 0 means it
	// loads at once.
	Wait time.Duration
}

// FillStats are counters of a Filler since NewFiller.
type FillStats struct {
	Hits        uint64 // values found in Redis (after waiting for a lease, too)
	Misses      uint64 // calls that had to load
	Fills       uint64 // loaded values stored
	FillsVoided uint64 // loaded values not stored: the lease was lost (deleted or expired)
	LeaseWaits  uint64 // calls that found another reader's lease and waited
	Errors      uint64 // calls that returned an error (Redis or load)
}

// Filler reads values through Redis with cache-aside and leases, so that a
// value loaded before a change committed is never stored after the daemon
// deleted the key. It is safe for concurrent use.
//
// On a miss, Get writes a lease marker into the key (SET NX PX LeaseTTL),
// loads, and stores the value only if the key still holds its own marker,
// in one atomic script. The daemon's UNLINK of the key removes the marker,
// and with it the right to store. Each command names a single key, so this
// works on Redis Cluster as on a single Redis, for exact keys and pattern
// deletions alike.
//
// Reads must come from the primary (a lagging replica can serve the old row
// after the delete), and every reader of the keys must use a Filler or
// treat a value starting with LeaseMarkerPrefix as a miss.
type Filler struct {
	rdb redis.UniversalClient
	cfg FillConfig

	hits, misses, fills, voided, waits, errs atomic.Uint64
}

// storeScript stores ARGV[2] under KEYS[1] (with PX ARGV[3] unless it is
// "0") if the key holds the lease marker ARGV[1].
var storeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1`)

// releaseScript deletes KEYS[1] if it holds the lease marker ARGV[1].
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// Poll intervals of a reader waiting for another's lease.
const (
	leasePollMin = time.Millisecond
	leasePollMax = 16 * time.Millisecond
)

// NewFiller returns a Filler that reads and fills through rdb (a single
// Redis or a Redis Cluster client). Errors name the offending FillConfig
// field.
func NewFiller(rdb redis.UniversalClient, cfg FillConfig) (*Filler, error) {
	switch {
	case rdb == nil:
		return nil, errors.New("subscriber: NewFiller: the Redis client is nil")
	case cfg.LeaseTTL < time.Millisecond:
		return nil, fmt.Errorf("subscriber: FillConfig.LeaseTTL must be at least 1ms (Redis PX counts milliseconds), got %s", cfg.LeaseTTL)
	case cfg.TTL < 0:
		return nil, fmt.Errorf("subscriber: FillConfig.TTL must not be negative, got %s", cfg.TTL)
	case cfg.TTL > 0 && cfg.TTL < time.Millisecond:
		return nil, fmt.Errorf("subscriber: FillConfig.TTL must be 0 (no expiry) or at least 1ms (Redis PX counts milliseconds), got %s", cfg.TTL)
	case cfg.Wait < 0:
		return nil, fmt.Errorf("subscriber: FillConfig.Wait must not be negative, got %s", cfg.Wait)
	}
	return &Filler{rdb: rdb, cfg: cfg}, nil
}

// Stats returns the counters. It is safe to call at any time.
func (f *Filler) Stats() FillStats {
	return FillStats{
		Hits: f.hits.Load(), Misses: f.misses.Load(), Fills: f.fills.Load(),
		FillsVoided: f.voided.Load(), LeaseWaits: f.waits.Load(), Errors: f.errs.Load(),
	}
}

// Get returns the value of key: from Redis if it is there (one GET), else
// from load, which it stores under key if no deletion of key happened
// between the lease and the store (on a miss, three round trips: GET, SET
// NX, the store script; the first store after Redis starts or flushes its
// scripts takes a fourth, to load the script). A lease marker is never
// returned.
//
// If another reader holds the key's lease, Get polls for its value for up
// to FillConfig.Wait, taking the lease itself if the key becomes empty;
// after that it returns what load returns without storing it. An error of
// load is returned wrapped, after releasing the lease; so is a Redis error,
// in which case load is not called.
func (f *Filler) Get(ctx context.Context, key string, load func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	v, err := f.get(ctx, key, load)
	if err != nil {
		f.errs.Add(1)
	}
	return v, err
}

func (f *Filler) get(ctx context.Context, key string, load func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	if v, found, err := f.read(ctx, key); err != nil || found {
		return v, err
	}
	var deadline time.Time
	poll := leasePollMin
	for {
		token, err := f.lease(ctx, key)
		if err != nil {
			return nil, err
		}
		if token != "" {
			f.misses.Add(1)
			return f.fill(ctx, key, token, "", load)
		}
		// Another reader holds the lease (or has just stored).
		if deadline.IsZero() {
			f.waits.Add(1)
			deadline = time.Now().Add(f.cfg.Wait)
		}
		for {
			v, found, err := f.read(ctx, key)
			if err != nil || found {
				return v, err
			}
			if v == nil { // empty: the lease is gone; try to take it
				break
			}
			if v, done, err := f.awaitLease(ctx, key, deadline, &poll, load); done {
				return v, err
			}
		}
	}
}

// read GETs key: found is true for a value (counted as a hit), false with
// v == nil for an absent key, false with v != nil for a lease marker.
func (f *Filler) read(ctx context.Context, key string) (v []byte, found bool, err error) {
	v, err = f.rdb.Get(ctx, key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("subscriber: GET %q: %w", key, err)
	case IsLeaseMarker(v):
		return v, false, nil
	}
	f.hits.Add(1)
	return v, true, nil
}

// lease tries to write a new lease marker into key and returns it, or ""
// if the key is not empty.
func (f *Filler) lease(ctx context.Context, key string) (string, error) {
	token, err := newLeaseMarker("")
	if err != nil {
		return "", err
	}
	ok, err := f.rdb.SetNX(ctx, key, token, f.cfg.LeaseTTL).Result()
	if err != nil {
		return "", fmt.Errorf("subscriber: SET NX %q: %w", key, err)
	}
	if !ok {
		return "", nil
	}
	return token, nil
}

// fill loads under the lease token and stores the value, after tag (a
// namespace's version, or "" for none), if the key still holds token.
func (f *Filler) fill(ctx context.Context, key, token, tag string, load func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	v, err := load(ctx)
	if err != nil {
		// Release the lease so the next reader loads at once; only our own
		// marker is deleted. The caller's ctx may be what failed the load.
		if rerr := releaseScript.Run(context.WithoutCancel(ctx), f.rdb, []string{key}, token).Err(); rerr != nil {
			return nil, fmt.Errorf("subscriber: load %q: %w (and releasing its lease: %w)", key, err, rerr)
		}
		return nil, fmt.Errorf("subscriber: load %q: %w", key, err)
	}
	stored := v
	if tag != "" {
		stored = append([]byte(tag), v...) // a tagged value never reads as a lease
	} else if IsLeaseMarker(v) {
		// It would read as a lease: return it but never store it.
		f.voided.Add(1)
		_ = releaseScript.Run(context.WithoutCancel(ctx), f.rdb, []string{key}, token).Err()
		return v, nil
	}
	if err := f.store(ctx, key, token, stored); err != nil {
		return nil, err
	}
	return v, nil
}

// store stores value under key if key still holds the lease token (the
// compare-and-set script), counting a fill or a voided one.
func (f *Filler) store(ctx context.Context, key, token string, value []byte) error {
	stored, err := storeScript.Run(ctx, f.rdb, []string{key}, token, value, f.cfg.TTL.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("subscriber: store %q: %w", key, err)
	}
	if stored == 1 {
		f.fills.Add(1)
	} else {
		f.voided.Add(1)
	}
	return nil
}

// IsLeaseMarker reports whether a value read from Redis is a Filler's lease
// marker (it starts with LeaseMarkerPrefix), which a reader must treat as a
// miss.
func IsLeaseMarker(v []byte) bool { return strings.HasPrefix(string(v), LeaseMarkerPrefix) }

// newLeaseMarker returns LeaseMarkerPrefix, infix and 16 random bytes in
// hex.
func newLeaseMarker(infix string) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("subscriber: lease token: %w", err)
	}
	return LeaseMarkerPrefix + infix + hex.EncodeToString(b[:]), nil
}

// awaitLease is one step of waiting for another reader's lease: past
// deadline it loads without storing (done, with load's value or error);
// before it, it pauses for poll, doubling it up to leasePollMax, and
// returns not done.
func (f *Filler) awaitLease(ctx context.Context, key string, deadline time.Time, poll *time.Duration, load func(ctx context.Context) ([]byte, error)) (v []byte, done bool, err error) {
	left := time.Until(deadline)
	if left <= 0 {
		f.misses.Add(1)
		v, err := load(ctx)
		if err != nil {
			return nil, true, fmt.Errorf("subscriber: load %q: %w", key, err)
		}
		return v, true, nil
	}
	if err := backoff.Sleep(ctx, min(*poll, left)); err != nil {
		return nil, true, fmt.Errorf("subscriber: waiting for the lease of %q: %w", key, err)
	}
	*poll = min(2**poll, leasePollMax)
	return nil, false, nil
}
