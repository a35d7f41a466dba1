package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Pinned mode (-pin) gives Vault a core of its own, and Caddy, the load
// generator, the fake Nextcloud and the backend the other core(s). On a
// shared machine, "POST/s against raw put/s" otherwise measures how the
// scheduler splits two cores among three busy programs, not whether the
// module keeps pace with its storage: with Vault alone on its core, the
// raw puts and the POSTs both meet the same Vault.
//
// The harness re-runs itself under `taskset -c <other cores>`, so it, and
// Caddy and Vault which it starts, begin with one core: Go sizes
// GOMAXPROCS from the affinity at start. Vault is then moved, every
// thread of it, to its own core (`taskset -a -p`), which keeps its
// GOMAXPROCS at one core's worth. The builds and `go test -bench` run on
// every core again, they measure nothing the pinning is for.

// pinEnv carries the placement into the re-run harness: "<vault>;<rest>;<all>".
const pinEnv = "CADDY_APPPW_BENCH_PINNED"

// placement is where the harness's processes run.
type placement struct {
	pinned bool
	vault  string // Vault's CPU list, when pinned
	rest   string // the CPU list of Caddy and the harness (load, fake Nextcloud, backend), when pinned
	all    string // every CPU the harness may use
	why    string // why -pin was asked but not done
}

// short is the placement as a table cell.
func (p placement) short() string {
	if p.pinned {
		return "pinned"
	}
	return "shared"
}

func (p placement) String() string {
	if p.pinned {
		return fmt.Sprintf("pinned: Vault alone on CPU %s; Caddy, the load generator, the fake Nextcloud and the backend on CPU %s (taskset)", p.vault, p.rest)
	}
	s := "shared: Vault, Caddy, the load generator, the fake Nextcloud and the backend all on CPUs " + p.all
	if p.why != "" {
		s += " (-pin was asked, but " + p.why + ")"
	}
	return s
}

// choosePlacement returns the placement to run with. When pinning is asked
// for and possible, it re-runs the harness under taskset and does not
// return; the re-run finds the placement in pinEnv.
func choosePlacement(pin bool) placement {
	if v := os.Getenv(pinEnv); v != "" {
		f := strings.Split(v, ";")
		if len(f) != 3 {
			fail(fmt.Sprintf("bad %s=%q", pinEnv, v))
		}
		return placement{pinned: true, vault: f[0], rest: f[1], all: f[2]}
	}
	all := allowedCPUs()
	p := placement{all: all}
	if !pin {
		return p
	}
	vault, rest, err := splitCPUs(all)
	if err != nil {
		p.why = err.Error()
		return p
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		p.why = "taskset was not found; it comes with util-linux"
		return p
	}
	self, err := os.Executable()
	if err != nil {
		p.why = "the harness's own executable is unknown: " + err.Error()
		return p
	}
	env := append(os.Environ(), pinEnv+"="+vault+";"+rest+";"+all)
	err = syscall.Exec(taskset, append([]string{"taskset", "-c", rest, self}, os.Args[1:]...), env)
	p.why = "re-running under taskset failed: " + err.Error()
	return p
}

// allowedCPUs is the CPU list this process may run on, from /proc.
func allowedCPUs() string {
	data, err := os.ReadFile("/proc/self/status")
	if err == nil {
		if v, ok := statusField(data, "Cpus_allowed_list"); ok {
			return v
		}
	}
	return "?"
}

// statusField is the value of a "Name:\tvalue" line of /proc/*/status.
func statusField(status []byte, name string) (string, bool) {
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == name {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// splitCPUs gives Vault the first CPU of the list and the rest to the
// others.
func splitCPUs(list string) (vault, rest string, err error) {
	cpus, err := parseCPUList(list)
	if err != nil {
		return "", "", err
	}
	if len(cpus) < 2 {
		return "", "", fmt.Errorf("this process may run on CPU %s only, and Vault needs one of its own", list)
	}
	return strconv.Itoa(cpus[0]), formatCPUList(cpus[1:]), nil
}

// parseCPUList reads the kernel's CPU list format ("0-3,6"), sorted and
// without repeats.
func parseCPUList(list string) ([]int, error) {
	var cpus []int
	for part := range strings.SplitSeq(strings.TrimSpace(list), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a {
			return nil, fmt.Errorf("bad CPU list %q", list)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	slices.Sort(cpus)
	return slices.Compact(cpus), nil
}

// formatCPUList writes sorted CPUs in the kernel's list format, ranges
// joined.
func formatCPUList(cpus []int) string {
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(cpus[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", cpus[i], cpus[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// pinProcess moves every thread of pid to cpus and checks that each one
// is there: taskset walks the threads one by one, and a thread started
// meanwhile by one not yet moved would stay behind.
func pinProcess(pid int, cpus string) error {
	want, err := parseCPUList(cpus)
	if err != nil {
		return err
	}
	var stray []string
	for range 5 {
		out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("taskset -a -p -c %s %d: %v: %s", cpus, pid, err, out)
		}
		if stray, err = threadsElsewhere(pid, want); err != nil || len(stray) == 0 {
			return err
		}
	}
	return fmt.Errorf("threads of process %d are still not on CPU %s: %s", pid, cpus, strings.Join(stray, "; "))
}

// threadsElsewhere lists the threads of pid whose allowed CPUs are not
// want, with theirs.
func threadsElsewhere(pid int, want []int) ([]string, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		return nil, errors.Join(err, fmt.Errorf("no threads of process %d in /proc", pid))
	}
	var stray []string
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue // the thread ended
		}
		v, _ := statusField(data, "Cpus_allowed_list")
		if got, err := parseCPUList(v); err != nil || !slices.Equal(got, want) {
			stray = append(stray, fmt.Sprintf("thread %s on %s", filepath.Base(filepath.Dir(t)), v))
		}
	}
	return stray, nil
}

// onAllCPUs runs name on every CPU the harness may use, also when the
// harness itself is pinned: builds and `go test -bench` are not part of
// what the pinning measures.
func (p placement) onAllCPUs(name string, args ...string) *exec.Cmd {
	if !p.pinned {
		return exec.Command(name, args...)
	}
	return exec.Command("taskset", append([]string{"-c", p.all, name}, args...)...)
}
