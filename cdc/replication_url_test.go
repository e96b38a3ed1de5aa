package cdc_test

import (
	"testing"

	"github.com/cachewire/invalidator/cdc"
)

func TestReplicationURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u@h/db", "postgres://u@h/db?replication=database"},
		{"postgres://u@h/db?sslmode=disable", "postgres://u@h/db?sslmode=disable&replication=database"},
		{"postgres://u@h/db?replication=true&sslmode=disable", "postgres://u@h/db?sslmode=disable&replication=database"},
		// a space in options must stay %20: a '+' reaches the server as is
		{"postgres://u@h/db?options=-c%20work_mem%3D64kB", "postgres://u@h/db?options=-c%20work_mem%3D64kB&replication=database"},
		{"postgres://u@a,b/db?target_session_attrs=read-write", "postgres://u@a,b/db?target_session_attrs=read-write&replication=database"},
	} {
		got, err := cdc.ReplicationURL(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ReplicationURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
