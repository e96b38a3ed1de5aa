package cdc

import "testing"

func TestServerMajor(t *testing.T) {
	for v, want := range map[string]int{
		"15.18 (Debian 15.18-0+deb12u1)": 15,
		"9.6.24":                         9,
		"17beta1":                        17,
		"":                               0,
		"devel":                          0,
	} {
		if got := serverMajor(v); got != want {
			t.Errorf("serverMajor(%q) = %d, want %d", v, got, want)
		}
	}
}
