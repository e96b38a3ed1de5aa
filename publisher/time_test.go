package publisher

import (
	"math/rand/v2"
	"testing"
	"time"
)

// AppendTime writes what AppendFormat(TimeLayout) writes, for any instant
// and any location.
func TestAppendTime_SameAsAppendFormat(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		ny = time.FixedZone("UTC-5", -5*3600)
	}
	cases := []time.Time{
		time.Date(2026, 12, 8, 2, 50, 47, 123456789, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 1000, time.UTC),
		time.Date(2000, 1, 1, 0, 0, 0, 999, ny),
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), // past 9999: AppendFormat's own
		time.Date(-1, 6, 1, 0, 0, 0, 0, time.UTC),
		{},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		cases = append(cases, time.Unix(0, r.Int64N(1<<62)).In(ny))
	}
	for _, c := range cases {
		want := c.UTC().AppendFormat(nil, TimeLayout)
		if got := AppendTime([]byte("x"), c); string(got) != "x"+string(want) {
			t.Fatalf("AppendTime(%v) = %q, want %q", c, got[1:], want)
		}
	}
}

func FuzzAppendTime(f *testing.F) {
	f.Add(int64(0), int64(0))
	f.Add(int64(1765162247), int64(123456789))
	f.Fuzz(func(t *testing.T, sec, nsec int64) {
		c := time.Unix(sec, nsec)
		if want, got := c.UTC().AppendFormat(nil, TimeLayout), AppendTime(nil, c); string(got) != string(want) {
			t.Fatalf("AppendTime(%d, %d) = %q, want %q", sec, nsec, got, want)
		}
	})
}

func BenchmarkAppendTime(b *testing.B) {
	now := time.Now()
	buf := make([]byte, 0, 64)
	b.Run("AppendTime", func(b *testing.B) {
		for b.Loop() {
			buf = AppendTime(buf[:0], now)
		}
	})
	b.Run("AppendFormat", func(b *testing.B) {
		for b.Loop() {
			buf = now.UTC().AppendFormat(buf[:0], TimeLayout)
		}
	})
}
