package main

import (
	"os/exec"
	"slices"
	"testing"
)

func TestCPUList(t *testing.T) {
	for _, tc := range []struct {
		list        string
		cpus        []int
		vault, rest string
	}{
		{"0-1", []int{0, 1}, "0", "1"},
		{"0-3", []int{0, 1, 2, 3}, "0", "1-3"},
		{"2,4-5,7", []int{2, 4, 5, 7}, "2", "4-5,7"},
		{"1,0,1", []int{0, 1}, "0", "1"},
		{"0-1\n", []int{0, 1}, "0", "1"},
	} {
		cpus, err := parseCPUList(tc.list)
		if err != nil || !slices.Equal(cpus, tc.cpus) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v", tc.list, cpus, err, tc.cpus)
		}
		vault, rest, err := splitCPUs(tc.list)
		if err != nil || vault != tc.vault || rest != tc.rest {
			t.Errorf("splitCPUs(%q) = %q, %q, %v; want %q, %q", tc.list, vault, rest, err, tc.vault, tc.rest)
		}
	}
	for _, bad := range []string{"", "a", "3-1", "-1", "0-"} {
		if cpus, err := parseCPUList(bad); err == nil {
			t.Errorf("parseCPUList(%q) = %v, want an error", bad, cpus)
		}
	}
	// One CPU: Vault cannot have one of its own; the run goes on shared.
	if _, _, err := splitCPUs("3"); err == nil {
		t.Error("splitCPUs(\"3\"): no error")
	}
	if v, ok := statusField([]byte("Name:\tx\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n"), "Cpus_allowed_list"); !ok || v != "0-1" {
		t.Errorf("statusField = %q, %v", v, ok)
	}
}

func TestPlacementDescribed(t *testing.T) {
	for _, tc := range []struct {
		p           placement
		short, long string
	}{
		{placement{pinned: true, vault: "0", rest: "1", all: "0-1"}, "pinned",
			"pinned: Vault alone on CPU 0; Caddy, the load generator, the fake Nextcloud and the backend on CPU 1 (taskset)"},
		{placement{all: "0-1"}, "shared", "shared: Vault, Caddy, the load generator, the fake Nextcloud and the backend all on CPUs 0-1"},
		{placement{all: "0-1", why: "taskset was not found"}, "shared",
			"shared: Vault, Caddy, the load generator, the fake Nextcloud and the backend all on CPUs 0-1 (-pin was asked, but taskset was not found)"},
	} {
		if tc.p.short() != tc.short || tc.p.String() != tc.long {
			t.Errorf("%+v: %q, %q; want %q, %q", tc.p, tc.p.short(), tc.p, tc.short, tc.long)
		}
	}
}

// TestPinProcess pins a running process's threads to one CPU and checks
// each of them from /proc. taskset is util-linux's, which scripts/test
// installs: without it the full suite fails, and only the fast lane
// (-short) skips, saying why. With one CPU allowed there is nothing to
// pin to, and the skip says so.
func TestPinProcess(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		if testing.Short() {
			t.Skip("taskset is not installed (apt-get install util-linux); skipped because of -short")
		}
		t.Fatal("taskset is not installed: apt-get install util-linux (scripts/test does)")
	}
	cpus, err := parseCPUList(allowedCPUs())
	if err != nil {
		t.Fatalf("the CPUs this process may run on: %v", err)
	}
	if len(cpus) < 2 {
		t.Skipf("skipped: pinning needs two CPUs, one to pin to and one to leave, and this process may run on CPU %q only", allowedCPUs())
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	last := cpus[len(cpus)-1:]
	if stray, err := threadsElsewhere(cmd.Process.Pid, last); err != nil || len(stray) == 0 {
		t.Fatalf("before pinning: %v, %v; want the thread on every CPU, not on %v only", stray, err, last)
	}
	if err := pinProcess(cmd.Process.Pid, formatCPUList(last)); err != nil {
		t.Fatal(err)
	}
	if stray, err := threadsElsewhere(cmd.Process.Pid, last); err != nil || len(stray) > 0 {
		t.Fatalf("after pinning to %v: %v, %v", last, stray, err)
	}
}
