package exitcode

import "testing"

// The multi-board rule: a confirmed corruption is never hidden behind another status.
func TestWorst(t *testing.T) {
	cases := []struct {
		codes []int
		want  int
	}{
		{nil, OK},
		{[]int{OK, OK}, OK},
		{[]int{OK, Warning}, Warning},
		{[]int{Warning, Inconclusive}, Inconclusive},
		{[]int{Inconclusive, Operational}, Operational},
		{[]int{Operational, Corrupt}, Corrupt},
		{[]int{Corrupt, Operational, Inconclusive, Warning}, Corrupt},
		{[]int{Usage, Corrupt}, Corrupt},
		{[]int{Operational, Usage}, Usage},
		{[]int{OK, 99}, 99}, // an unknown status ranks as operational
	}
	for _, c := range cases {
		if got := Worst(c.codes...); got != c.want {
			t.Errorf("Worst(%v) = %d, want %d", c.codes, got, c.want)
		}
	}
}
