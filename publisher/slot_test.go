package publisher_test

import (
	"testing"

	"github.com/cachewire/invalidator/publisher"
)

func TestHashSlot(t *testing.T) {
	// values from the Redis Cluster specification and CLUSTER KEYSLOT
	for key, want := range map[string]int{
		"123456789": 12739, // the CRC16/XMODEM check value 0x31C3
		"foo":       12182,
		"bar":       5061,
		"":          0,
	} {
		if got := publisher.HashSlot(key); got != want {
			t.Errorf("HashSlot(%q) = %d, want %d", key, got, want)
		}
	}
	// hash tags: only the part between the first '{' and the next '}'
	for key, tag := range map[string]string{
		"{user1000}.following": "user1000",
		"x{bar}y{foo}":         "bar",
		"foo{{bar}}zap":        "{bar",
	} {
		if publisher.HashSlot(key) != publisher.HashSlot(tag) {
			t.Errorf("HashSlot(%q) != HashSlot(%q)", key, tag)
		}
	}
	// an empty tag does not count: the whole key is hashed
	if publisher.HashSlot("foo{}{bar}") == publisher.HashSlot("bar") {
		t.Error(`HashSlot("foo{}{bar}") used the second tag`)
	}
}
