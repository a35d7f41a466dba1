// Command bench measures what the app_password module costs, side by side
// with a baseline measured in the same run, so the figures are ratios that
// hold on a noisy machine:
//
//  1. pass-through: one backend behind plain reverse_proxy (A) and behind
//     app_password + reverse_proxy (B), in one Caddy, alternating A and B;
//  2. provisioning: POST app-password through Caddy (dev Vault, a fake
//     Nextcloud that answers at once) against raw KV v2 create-only writes
//     to the same Vault with the official client, at the same concurrency;
//  3. the limiter's go test benchmarks;
//  4. a flood of distinct user ids that fail the format check (so each is
//     tracked): Caddy's resident memory before and after, and whether a
//     legitimate user is still served.
//
// Run from the repository root: `go run ./bench` (about 5 minutes on 2
// cores), or `go run ./bench -smoke` (seconds; figures meaningless, for
// CI). Every request's answer is checked for what its kind must get (status
// and body; for SSE, each event reaching the client before the next is
// sent): the figures count correct answers only, the report lists the wrong
// ones per scenario, and any wrong answer, or a scenario with no correct
// one, makes the run exit non-zero after the report.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
)

const password = "Abcde-Fghij-Klmno-Pqrst-Uvwxy"

// ssePatience is how long the /sse backend waits for the client to read an
// event before it ends the stream short (sse.go). Only a proxy that holds
// events back ever waits that long, so it is generous: the loaded shared
// machine must not turn a slow event into a wrong answer.
const ssePatience = time.Second

// plan is how long and how hard each part runs.
type plan struct {
	rounds  int
	round   time.Duration
	workers int
	flood   int
}

// cleanups are run last first, when main returns and when the harness
// fails: os.Exit skips deferred calls, and a failed run must not leave
// Caddy, Vault or the temporary directory behind.
type cleanups []func()

func (c *cleanups) Cleanup(f func()) { *c = append(*c, f) }

func (c *cleanups) run() {
	for len(*c) > 0 {
		f := (*c)[len(*c)-1]
		*c = (*c)[:len(*c)-1]
		f()
	}
}

var atExit cleanups

func main() {
	smoke := flag.Bool("smoke", false, "run each part for a moment (CI: the harness works; the figures mean nothing)")
	out := flag.String("out", "", "also write the report, as Markdown, to this file")
	flag.Parse()
	p := plan{rounds: 5, round: 3 * time.Second, workers: 8, flood: 1_000_000}
	if *smoke {
		p = plan{rounds: 1, round: 300 * time.Millisecond, workers: 4, flood: 2_000}
	}

	dir, err := os.MkdirTemp("", "caddy-apppw-bench")
	must(err)
	atExit.Cleanup(func() { _ = os.RemoveAll(dir) })
	defer atExit.run()

	step("building Caddy with the module (cmd/caddy)")
	bin := filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	build.Stderr = os.Stderr
	must(build.Run())

	step("starting the dev Vault, the fake Nextcloud and the backend")
	vault, err := devvault.Run(devvault.Options{})
	must(err)
	atExit.Cleanup(vault.Stop)
	nc := fakenextcloud.New(&atExit)
	nc.AcceptAnyUser(password)
	sse := newPacer(ssePatience)
	backend, stopBackend := startBackend(sse)
	atExit.Cleanup(stopBackend)

	siteA, siteB := "http://"+freeAddr(), "http://"+freeAddr()
	caddy := startCaddy(bin, dir, fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
}

%s {
	reverse_proxy %s {
		flush_interval -1
	}
}

%s {
	app_password {
		nextcloud %s
		vault %s {
			token {env.VAULT_TOKEN}
			path_prefix bench/module
		}
	}
	reverse_proxy %s {
		flush_interval -1
	}
}
`, siteA, backend, siteB, nc.URL, vault.Addr, backend), []string{"VAULT_TOKEN=" + vault.Token})
	atExit.Cleanup(caddy.Stop)
	processes = append(processes,
		struct {
			name string
			pid  int
		}{"Vault", vault.Pid()},
		struct {
			name string
			pid  int
		}{"Caddy", caddy.Pid()},
		struct {
			name string
			pid  int
		}{"bench (load, fake Nextcloud, backend)", os.Getpid()})

	var report bytes.Buffer
	fmt.Fprintf(&report, "Machine: %d cores, %s %s/%s. Plan: %d rounds of %s per side, %d workers, %d flood requests.\n\n",
		runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, p.rounds, p.round, p.workers, p.flood)
	fmt.Fprintln(&report, "| measure | A (baseline) | B (with the module) | B/A |")
	fmt.Fprintln(&report, "|---|---|---|---|")

	client := newClient(p.workers)
	var measured runs
	for _, kind := range []string{"/kib", "/sse"} {
		name := "pass-through " + kind
		step(name)
		pa, pb := kibProbe(client, siteA), kibProbe(client, siteB)
		if kind == "/sse" {
			pa, pb = sseProbe(client, siteA, sse), sseProbe(client, siteB, sse)
		}
		a, b := alternate(p, p.workers, pa, pb)
		measured.add(name, "A", a)
		measured.add(name, "B", b)
		row(&report, name+": correct answers/s", a.rps(), b.rps())
		row(&report, name+": p50 ms", ms(a.p50), ms(b.p50))
		row(&report, name+": p99 ms", ms(a.p99), ms(b.p99))
		if kind == "/sse" {
			row(&report, name+": first event p50 ms", ms(a.first50), ms(b.first50))
			row(&report, name+": first event p99 ms", ms(a.first99), ms(b.first99))
		}
		cpuRows(&report, name, a, b)
	}

	step("provisioning: POST through Caddy vs raw KV v2 writes")
	// The baseline client keeps as many idle connections as the module's
	// (64): the library's default (GOMAXPROCS+1) would make it redial under
	// 8 workers and look slower than it is.
	vault.Root.CloneConfig().HttpClient.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	kv := vault.Root.KVv2("secret")
	var ids atomic.Int64 // every write is a first provisioning: cas=0, one Vault round trip
	rawID := func() string { return fmt.Sprintf("r%d", ids.Add(1)) }
	postID := func() string { return fmt.Sprintf("p%d", ids.Add(1)) }
	post := postProbe(client, siteB, postID)
	a, b := alternate(p, p.workers, rawPutProbe(kv, rawID), post)
	measured.add("provisioning", "A (raw KV v2 write)", a)
	measured.add("provisioning", "B (POST through Caddy)", b)
	row(&report, "provisioning: correct writes/s (A raw Vault KV v2 cas=0, B POST through Caddy)", a.rps(), b.rps())
	row(&report, "provisioning: p50 ms", ms(a.p50), ms(b.p50))
	row(&report, "provisioning: p99 ms", ms(a.p99), ms(b.p99))
	cpuRows(&report, "provisioning", a, b)

	step(fmt.Sprintf("key flood: %d distinct user ids failing the format check", p.flood))
	before := rss(caddy.Pid())
	flood := closedLoop(p.workers, 10*time.Minute, p.flood, floodProbe(client, siteB))
	after := rss(caddy.Pid())
	measured.add("key flood (400 for each)", "B", flood)
	legit := closedLoop(1, time.Minute, 1, post)
	measured.add("key flood: a legitimate POST afterwards", "B", legit)
	fmt.Fprintf(&report, "\nKey flood: %d requests (%s); Caddy RSS %.1f MiB before, %.1f MiB after (+%.1f MiB); a legitimate POST afterwards: %s.\n",
		flood.correct+flood.failures, flood, mib(before), mib(after), mib(after-before), map[bool]string{true: "200, served", false: "FAILED"}[legit.correct == 1])

	step("limiter: go test -bench")
	args := []string{"test", "-run", "^$", "-bench", "Limiter", "-benchmem", "./caddyapppw"}
	if *smoke {
		args = append(args, "-benchtime", "100x")
	}
	var benchOut bytes.Buffer
	gt := exec.Command("go", args...)
	gt.Stdout, gt.Stderr = &benchOut, os.Stderr
	var limiterErr error
	if err := gt.Run(); err != nil {
		limiterErr = fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	fmt.Fprintln(&report, "\nLimiter (`go test -bench Limiter -benchmem ./caddyapppw`):\n\n```")
	for _, line := range strings.Split(benchOut.String(), "\n") {
		if strings.HasPrefix(line, "Benchmark") {
			fmt.Fprintln(&report, line)
		}
	}
	fmt.Fprintln(&report, "```")

	fmt.Fprint(&report, "\nAnswers (only correct ones count in the figures above):\n\n")
	measured.table(&report)

	fmt.Print("\n" + report.String())
	if *out != "" {
		must(os.WriteFile(*out, report.Bytes(), 0o644))
	}
	if err := measured.verdict(); err != nil {
		fail("FAILED: wrong answers; the figures above leave them out, but they do not measure what they say:\n" + err.Error())
	}
	if limiterErr != nil {
		fail("FAILED: " + limiterErr.Error())
	}
}

// processes are the programs whose CPU the report divides among requests.
var processes []struct {
	name string
	pid  int
}

// alternate runs A and B in turns, round after round, swapping which goes
// first, so drift in the machine's load falls on both alike. It also sums
// the CPU each process spent during each side's rounds.
func alternate(p plan, workers int, a, b probe) (result, result) {
	var ra, rb []result
	cpuA, cpuB := make([]time.Duration, len(processes)), make([]time.Duration, len(processes))
	run := func(f probe, rs *[]result, cpu []time.Duration) {
		before := make([]time.Duration, len(processes))
		for i, pr := range processes {
			before[i] = cpuTime(pr.pid)
		}
		*rs = append(*rs, closedLoop(workers, p.round, 0, f))
		for i, pr := range processes {
			cpu[i] += cpuTime(pr.pid) - before[i]
		}
	}
	for i := range p.rounds {
		if i%2 == 0 {
			run(a, &ra, cpuA)
			run(b, &rb, cpuB)
		} else {
			run(b, &rb, cpuB)
			run(a, &ra, cpuA)
		}
	}
	A, B := merge(ra), merge(rb)
	A.cpu, B.cpu = cpuA, cpuB
	return A, B
}

// cpuRows reports CPU per correct answer for each process.
func cpuRows(w io.Writer, label string, a, b result) {
	var totalA, totalB float64
	for i, pr := range processes {
		pa, pb := perRequestMicros(a.cpu[i], a.correct), perRequestMicros(b.cpu[i], b.correct)
		totalA, totalB = totalA+pa, totalB+pb
		row(w, fmt.Sprintf("%s: CPU µs per request, %s", label, pr.name), pa, pb)
	}
	row(w, label+": CPU µs per request, all", totalA, totalB)
}

func perRequestMicros(d time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(n)
}

func row(w io.Writer, name string, a, b float64) {
	ratio := "–"
	if a > 0 {
		ratio = fmt.Sprintf("%.3f", b/a)
	}
	fmt.Fprintf(w, "| %s | %.3g | %.3g | %s |\n", name, a, b, ratio)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b int64) float64        { return float64(b) / (1 << 20) }

func step(s string) { fmt.Fprintln(os.Stderr, "bench:", s) }
