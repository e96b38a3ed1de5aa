package subscriber

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// VersionedValuePrefix starts every value GetInNamespace stores: the value
// is stored under the key as VersionedValuePrefix, the namespace's version
// in decimal, ':' and the value's bytes. A value of another version reads
// as a miss, so one INCR of the version key voids every value stored under
// the versions before it; the daemon's exact UNLINKs still delete the key.
// Like LeaseMarkerPrefix, it starts with a NUL byte.
const VersionedValuePrefix = "\x00invalidator:v:"

// VersionedValue returns what GetInNamespace stores under a key for value
// at version (the decimal text of the version key).
func VersionedValue(version string, value []byte) []byte {
	return append([]byte(versionTag(version)), value...)
}

// ParseVersionedValue splits a value GetInNamespace stored into its
// version and the value itself; ok is false for anything else.
func ParseVersionedValue(stored []byte) (version string, value []byte, ok bool) {
	rest, found := strings.CutPrefix(string(stored), VersionedValuePrefix)
	if !found {
		return "", nil, false
	}
	i := strings.IndexByte(rest, ':')
	if i <= 0 {
		return "", nil, false
	}
	return rest[:i], stored[len(VersionedValuePrefix)+i+1:], true
}

func versionTag(version string) string { return VersionedValuePrefix + version + ":" }

// leaseInNamespaceScript takes the lease of KEYS[1] for a fill at one
// version unless the key holds a value of that version, another reader's
// lease at that version or a later one, or (unless ARGV[6] is "1") a
// value of a later version. ARGV: the new lease marker, the lease TTL in
// ms, the tag of a value of the version (versionTag), the version,
// LeaseMarkerPrefix, whether to replace a later version's value, and
// VersionedValuePrefix. It
// returns {0} when it took the lease, {1, value} for a value of the
// version, {2} for another's lease, {3} for a later version's value. A
// value of an earlier version, or a lease of one (whose value would be
// void anyway), is replaced by the new lease.
var leaseInNamespaceScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  if string.sub(cur, 1, #ARGV[3]) == ARGV[3] then return {1, cur} end
  if string.sub(cur, 1, #ARGV[5]) == ARGV[5] then
    local v = string.match(string.sub(cur, #ARGV[5] + 1), '^v(%d+):')
    if not v or tonumber(v) >= tonumber(ARGV[4]) then return {2} end
  elseif ARGV[6] ~= '1' and string.sub(cur, 1, #ARGV[7]) == ARGV[7] then
    local v = string.match(string.sub(cur, #ARGV[7] + 1), '^(%d+):')
    if v and tonumber(v) > tonumber(ARGV[4]) then return {3} end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {0}`)

// GetInNamespace is Get for a key of a namespace: a rule with a
// namespace (README, "Rules") whose wide form is an INCR of the version
// key nsKey (the key as the daemon names it in messages, key prefix
// included). It reads the version and the key in one round trip (a
// pipeline; on Redis Cluster the two keys may be on two nodes, read at
// once), and returns the value only if it was stored under the current
// version. On a miss it takes the key's lease, loads, and stores the
// value tagged with the version it read before loading (see
// VersionedValuePrefix), only if the key still holds its lease: a value
// loaded before a change committed is never served after the daemon
// deleted the key or bumped the version.
//
// A version key that does not exist yet is created with SET NX, at a
// value derived from the clock, so that a version key that was lost never
// makes old values current again. Every reader of the namespace's keys
// must use GetInNamespace: a plain GET sees the tagged value.
//
// Waiting for another reader's lease, and errors, are as for Get.
func (f *Filler) GetInNamespace(ctx context.Context, nsKey, key string, load func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	v, err := f.getInNamespace(ctx, nsKey, key, load)
	if err != nil {
		f.errs.Add(1)
	}
	return v, err
}

// versionedValue is the value in stored (as read, nil when missing) if
// it was stored under tag's version; it shares stored's bytes, which
// go-redis read into a buffer of their own.
func versionedValue(stored []byte, tag string) ([]byte, bool) {
	if stored == nil {
		return nil, false
	}
	return bytes.CutPrefix(stored, []byte(tag))
}

func (f *Filler) getInNamespace(ctx context.Context, nsKey, key string, load func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	version, stored, err := f.readInNamespace(ctx, nsKey, key)
	if err != nil {
		return nil, err
	}
	tag := versionTag(version)
	if v, ok := versionedValue(stored, tag); ok {
		f.hits.Add(1)
		return v, nil
	}
	var deadline time.Time
	poll := leasePollMin
	// reread: a later version's value was found once; if the version key
	// says the same after reading it again, it went back (it was lost and
	// made again by an INCR) and that value is replaced
	reread := false
	for {
		// the version in the marker lets a reader of a later version
		// take over a lease whose value would be void
		token, err := newLeaseMarker("v" + version + ":")
		if err != nil {
			return nil, err
		}
		replace := "0"
		if reread {
			replace = "1"
		}
		r, err := leaseInNamespaceScript.Run(ctx, f.rdb, []string{key},
			token, f.cfg.LeaseTTL.Milliseconds(), tag, version, LeaseMarkerPrefix, replace, VersionedValuePrefix).Slice()
		if err != nil {
			return nil, fmt.Errorf("subscriber: lease %q: %w", key, err)
		}
		code, _ := r[0].(int64)
		switch code {
		case 0:
			f.misses.Add(1)
			return f.fill(ctx, key, token, tag, load)
		case 1:
			s, _ := r[1].(string)
			f.hits.Add(1)
			return []byte(strings.TrimPrefix(s, tag)), nil
		case 3:
			// the version moved on since it was read: read it again
			newer, stored, err := f.readInNamespace(ctx, nsKey, key)
			if err != nil {
				return nil, err
			}
			reread = newer == version
			version, tag = newer, versionTag(newer)
			if v, ok := versionedValue(stored, tag); ok {
				f.hits.Add(1)
				return v, nil
			}
			continue
		}
		if deadline.IsZero() {
			f.waits.Add(1)
			deadline = time.Now().Add(f.cfg.Wait)
		}
		if v, done, err := f.awaitLease(ctx, key, deadline, &poll, load); done {
			return v, err
		}
	}
}

// readInNamespace reads the version of nsKey (creating it if absent) and
// what key holds (nil when absent) in one round trip.
func (f *Filler) readInNamespace(ctx context.Context, nsKey, key string) (version string, stored []byte, err error) {
	pipe := f.rdb.Pipeline()
	ver := pipe.Get(ctx, nsKey)
	val := pipe.Get(ctx, key)
	_, _ = pipe.Exec(ctx) // each command's error is read below
	if stored, err = val.Bytes(); errors.Is(err, redis.Nil) {
		stored, err = nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("subscriber: GET %q: %w", key, err)
	}
	version, err = ver.Result()
	if errors.Is(err, redis.Nil) {
		version, err = f.initVersion(ctx, nsKey)
	}
	if err != nil {
		return "", nil, fmt.Errorf("subscriber: GET %q: %w", nsKey, err)
	}
	if _, perr := strconv.ParseUint(version, 10, 64); perr != nil {
		return "", nil, fmt.Errorf("subscriber: namespace %q holds %q, not a version number", nsKey, version)
	}
	return version, stored, nil
}

// initVersion creates an absent version key at the clock in microseconds
// (far above what INCRs from 0 reach, and above what it held before it
// was lost, unless the clock went back) and returns the version it holds.
func (f *Filler) initVersion(ctx context.Context, nsKey string) (string, error) {
	epoch := strconv.FormatInt(time.Now().UnixMicro(), 10)
	old, err := f.rdb.SetArgs(ctx, nsKey, epoch, redis.SetArgs{Mode: "NX", Get: true}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return epoch, nil // ours
	case err != nil:
		return "", err
	}
	return old, nil // another reader's, or the daemon's INCR, was first
}
