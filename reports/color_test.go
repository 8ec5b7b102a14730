package reports

import "testing"

func TestColorAllowed(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, true},
		{map[string]string{"NO_COLOR": ""}, true}, // no-color.org: only a non-empty value disables
		{map[string]string{"NO_COLOR": "1"}, false},
		{map[string]string{"NO_COLOR": "0"}, false}, // any non-empty value
		{map[string]string{"TERM": "dumb"}, false},
		{map[string]string{"TERM": "xterm-256color"}, true},
	}
	for _, c := range cases {
		if got := colorAllowed(func(k string) string { return c.env[k] }); got != c.want {
			t.Errorf("colorAllowed(%v) = %v, want %v", c.env, got, c.want)
		}
	}
}
