package server

import (
	"testing"
)

func TestHostAllowed(t *testing.T) {
	hn := hostname()
	for _, tc := range []struct {
		host, bound string
		extra       []string
		want        bool
	}{
		{"127.0.0.1:9785", "127.0.0.1:9785", nil, true},
		{"localhost:9785", "127.0.0.1:9785", nil, true},
		{"[::1]:9785", "127.0.0.1:9785", nil, true},
		{"127.0.0.1", "127.0.0.1:80", nil, true},
		{"127.0.0.1", "127.0.0.1:9785", nil, false},
		{"", "127.0.0.1:9785", nil, false},
		{"evil.example:9785", "127.0.0.1:9785", nil, false},
		{"10.1.2.3:9785", "127.0.0.1:9785", nil, false},
		{"10.1.2.3:9785", "10.1.2.3:9785", nil, true},
		{"10.1.2.3:9785", "0.0.0.0:9785", nil, true},
		{"[2001:db8::1]:9785", "[::]:9785", nil, true},
		{"evil.example:9785", "0.0.0.0:9785", nil, false},
		{hn + ":9785", "0.0.0.0:9785", nil, hn != ""},
		{hn + ":9785", "127.0.0.1:9785", nil, hn == "localhost"},
		{"tokend.example", "127.0.0.1:8785", []string{"tokend.example"}, true},
		{"TOKEND.example", "127.0.0.1:8785", []string{"tokend.example"}, true},
		{"tokend.example:8785", "127.0.0.1:8785", []string{"tokend.example"}, false},
		{"127.0.0.1:1", "127.0.0.1:8785", []string{"127.0.0.1:1"}, true},
	} {
		if got := hostAllowed(tc.host, tc.bound, tc.extra); got != tc.want {
			t.Errorf("hostAllowed(%q, %q, %q) = %v, want %v", tc.host, tc.bound, tc.extra, got, tc.want)
		}
	}
}
