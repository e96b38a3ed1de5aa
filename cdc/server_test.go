package cdc_test

import (
	"errors"
	"testing"

	"github.com/cachewire/invalidator/cdc"
)

func TestFailoverSlot(t *testing.T) {
	for _, tc := range []struct {
		mode    string
		major   int
		want    bool
		wantErr bool
	}{
		{"auto", 14, false, false}, {"auto", 16, false, false}, {"auto", 17, true, false}, {"auto", 18, true, false},
		{"", 17, true, false}, {"false", 17, false, false}, {"false", 14, false, false},
		{"true", 17, true, false}, {"true", 18, true, false}, {"true", 16, false, true},
	} {
		got, err := cdc.FailoverSlot(tc.mode, tc.major)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("FailoverSlot(%q, %d) = %v, %v; want %v, error %v", tc.mode, tc.major, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !errors.Is(err, cdc.ErrUnsupported) {
			t.Errorf("FailoverSlot(%q, %d) error %v does not wrap ErrUnsupported", tc.mode, tc.major, err)
		}
	}
}
