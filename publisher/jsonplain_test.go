package publisher

import "testing"

func TestJSONPlainMatchesTheRule(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := c >= 0x20 && c < 0x80 && c != '"' && c != '\\'
		if got := jsonPlain[c] == '1'; got != want {
			t.Errorf("jsonPlain[%#x] is %v, want %v", c, got, want)
		}
	}
}
