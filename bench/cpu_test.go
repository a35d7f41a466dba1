package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// CPU accounting: the figures "CPU per correct answer" rest on reading
// utime+stime from /proc/<pid>/stat right.

func TestStatCPU(t *testing.T) {
	// Fields 14 and 15 are utime 250 and stime 31 ticks; the command name
	// holds spaces and parentheses, so naive splitting would count wrong.
	const line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 9999 0 0 0 250 31 0 0 20 0 12 0 123456 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	got, err := statCPU([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := 2810 * time.Millisecond; got != want {
		t.Errorf("statCPU = %s, want %s (281 ticks of 10 ms)", got, want)
	}
	for _, bad := range []string{"", "4242 my cmd S 1", "4242 (cmd) S 1 2 3", strings.Replace(line, " 250 ", " x ", 1)} {
		if d, err := statCPU([]byte(bad)); err == nil {
			t.Errorf("statCPU(%q) = %s, want an error", bad, d)
		}
	}
}

func TestPerRequestMicros(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		n    int
		want float64
	}{
		{450 * time.Millisecond, 1000, 450},
		{10 * time.Millisecond, 400, 25},
		{time.Second, 0, 0}, // no answers: no figure, not a division by zero
	} {
		if got := perRequestMicros(tc.d, tc.n); got != tc.want {
			t.Errorf("perRequestMicros(%s, %d) = %v, want %v", tc.d, tc.n, got, tc.want)
		}
	}
	r := result{correct: 200, cpu: []time.Duration{procVault: 90 * time.Millisecond, procCaddy: 40 * time.Millisecond, procBench: 0}}
	if v, c := r.cpuPer(procVault), r.cpuPer(procCaddy); v != 450 || c != 200 {
		t.Errorf("cpuPer: Vault %v, Caddy %v; want 450, 200", v, c)
	}
	if got := (result{correct: 5}).cpuPer(procCaddy); got != 0 {
		t.Errorf("cpuPer without CPU readings = %v, want 0", got)
	}
}

// TestCPUTimeOfThisProcess reads this process's own /proc stat while it
// burns CPU: the reading must grow by what was burnt.
func TestCPUTimeOfThisProcess(t *testing.T) {
	start := cpuTime(os.Getpid())
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for cpuTime(os.Getpid())-start < 50*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("cpuTime grew by %s in 10 s of busy work", cpuTime(os.Getpid())-start)
		}
		for i := range 1_000_000 {
			x += i
		}
	}
	_ = x
}
