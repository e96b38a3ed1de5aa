// Package warm stands in for an application's read-through cache in the
// subscriber example: it loads Redis string values into a subscriber.Cache
// so that the example has something to evict.
package warm

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/cachewire/invalidator/subscriber"
)

// Loop loads the string keys matching pattern (a Redis glob) into cache, up
// to limit new entries per pass, once every interval, until ctx is done. It
// returns only then. GetOrLoad keeps a value read before an invalidation
// of its key from being stored after it; keys that are gone, are not
// strings or hold a Filler's lease marker (a fill in progress) are skipped.
func Loop(ctx context.Context, rdb redis.UniversalClient, cache *subscriber.Cache, pattern string, limit int, interval time.Duration, log *zap.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		loaded := 0
		iter := rdb.Scan(ctx, 0, pattern, 100).Iterator()
		for loaded < limit && iter.Next(ctx) {
			key := iter.Val()
			if _, ok := cache.Get(key); ok {
				continue
			}
			before := cache.FillStats().Fills
			_, err := cache.GetOrLoad(ctx, key, func(ctx context.Context) (any, error) {
				v, err := rdb.Get(ctx, key).Result()
				if err == nil && subscriber.IsLeaseMarker([]byte(v)) {
					return nil, errLeased
				}
				return v, err
			})
			if err == nil && cache.FillStats().Fills > before {
				loaded++
			}
		}
		if err := iter.Err(); err != nil && ctx.Err() == nil {
			log.Warn("scan failed", zap.Error(err))
		} else if loaded > 0 {
			log.Info("loaded keys", zap.Int("loaded", loaded), zap.Int("cached", cache.Len()))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// errLeased: the key holds a lease marker, which is not a value.
var errLeased = errors.New("a fill is in progress")
