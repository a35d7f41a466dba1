// Command bench measures what the app_password module costs, side by side
// with a baseline measured in the same run, so the figures are ratios that
// hold on a noisy machine:
//
//  1. pass-through: one backend behind plain reverse_proxy (A) and behind
//     app_password + reverse_proxy (B), in one Caddy, alternating A and B;
//  2. provisioning: POST app-password through Caddy (dev Vault, a fake
//     Nextcloud that answers at once) against the module's own Vault
//     write made directly with the official client (record.go), at the
//     same concurrency;
//  3. a flood of distinct user ids that fail the format check (so each is
//     tracked): Caddy's resident memory before and after, and whether a
//     legitimate user is still served;
//  4. rejections: a POST with a malformed password (400) and one for a
//     user out of attempts (429), answered by the module (B) or passed by
//     plain reverse_proxy to a backend that answers the same (A);
//  5. the limiter's go test benchmarks.
//
// It reports correct answers/s, latency, and each process's CPU per
// correct answer, then judges the targets of the module's cost
// (targets.go) as "met" or "not met" without failing on them.
//
// Run from the repository root: `go run ./bench` (about 5 minutes on 2
// cores), `go run ./bench -pin` (Vault on a core of its own, pin.go),
// `-profile DIR` (a CPU profile of Caddy under POST load, profile.go), or
// `go run ./bench -smoke` (seconds; figures meaningless, for CI). Every
// request's answer is checked for what its kind must get (status and
// body; for SSE, each event reaching the client before the next is sent):
// the figures count correct answers only, the report lists the wrong ones
// per scenario, and any wrong answer, or a scenario with no correct one,
// makes the run exit non-zero after the report.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/atexit"
	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
)

const password = "Abcde-Fghij-Klmno-Pqrst-Uvwxy"

// ssePatience is how long the /sse backend waits for the client to read an
// event before it ends the stream short (sse.go). Only a proxy that holds
// events back ever waits that long, so it is generous: the loaded shared
// machine must not turn a slow event into a wrong answer.
const ssePatience = time.Second

// limiterPackage holds the limiter's benchmarks.
const limiterPackage = "./internal/ratelimit"

// plan is how long and how hard each part runs.
type plan struct {
	rounds  int // per scenario; even, so alternating rounds are fair to both sides
	round   time.Duration
	workers int
	warmup  int // requests per side before the fixed-count scenarios
	flood   int
	profile int // seconds of the CPU profile (-profile)
}

// atExit holds what the run started, stopped last first at its end or
// when it fails.
var atExit atexit.Cleanups

func main() {
	smoke := flag.Bool("smoke", false, "run each part for a moment (CI: the harness works; the figures mean nothing)")
	out := flag.String("out", "", "also write the report, as Markdown, to this file")
	pin := flag.Bool("pin", false, "run Vault on a core of its own, and Caddy and the harness on the other(s) (taskset)")
	profileDir := flag.String("profile", "", "take a CPU profile of Caddy under POST load into this directory and report its top")
	flag.Parse()
	pl := choosePlacement(*pin) // with -pin, re-runs the harness under taskset
	if pl.why != "" {
		step("not pinned: " + pl.why)
	}
	p := plan{rounds: 6, round: 3 * time.Second, workers: 8, warmup: 400, flood: 1_000_000, profile: 10}
	if *smoke {
		p = plan{rounds: 2, round: 300 * time.Millisecond, workers: 4, warmup: 40, flood: 2_000, profile: 1}
	}

	dir, err := os.MkdirTemp("", "caddy-apppw-bench")
	must(err)
	atExit.Cleanup(func() { _ = os.RemoveAll(dir) })
	defer atExit.Run()

	step("building Caddy with the module (cmd/caddy)")
	bin := filepath.Join(dir, "caddy")
	build := pl.onAllCPUs("go", "build", "-o", bin, "./cmd/caddy")
	build.Stderr = os.Stderr
	must(build.Run())

	step("starting the dev Vault, the fake Nextcloud and the backend")
	vault, err := devvault.Run(devvault.Options{})
	must(err)
	atExit.Cleanup(vault.Stop)
	if pl.pinned {
		must(pinProcess(vault.Pid(), pl.vault))
	}
	nc := fakenextcloud.New(&atExit)
	nc.AcceptAnyUser(password)
	sse := newPacer(ssePatience)
	backend, stopBackend := startBackend(sse)
	atExit.Cleanup(stopBackend)

	// Caddy inherits the harness's CPUs. Its admin endpoint serves the
	// CPU profile (-profile); idle, it costs nothing.
	siteA, siteB, admin := "http://"+freeAddr(), "http://"+freeAddr(), freeAddr()
	caddy := startCaddy(bin, dir, fmt.Sprintf(`{
	admin %s
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
		}
		# A sweep round would check stored users against Nextcloud in the
		# middle of a measured round.
		sweep off
	}
	reverse_proxy %s {
		flush_interval -1
	}
}
`, admin, siteA, backend, siteB, nc.URL, vault.Addr, backend), []string{"VAULT_TOKEN=" + vault.Token})
	atExit.Cleanup(caddy.Stop)
	if pl.pinned {
		rest, _ := parseCPUList(pl.rest)
		stray, err := threadsElsewhere(caddy.Pid(), rest)
		must(err)
		if len(stray) > 0 {
			fail("Caddy is not on CPU " + pl.rest + ": " + strings.Join(stray, "; "))
		}
	}
	processes = []proc{
		procVault: {"Vault", vault.Pid()},
		procCaddy: {"Caddy", caddy.Pid()},
		procBench: {"bench (load, fake Nextcloud, backend)", os.Getpid()},
	}

	var report bytes.Buffer
	// runtime.NumCPU counts the CPUs this process may use: one, pinned.
	cpus, _ := parseCPUList(pl.all)
	fmt.Fprintf(&report, "Machine: %d CPUs (%s), %s %s/%s. Placement: %s.\n\n", len(cpus), pl.all, runtime.Version(), runtime.GOOS, runtime.GOARCH, pl)
	fmt.Fprintf(&report, "Plan: %d alternating rounds of about %s per side, %d workers; the provisioning and rejection rounds are of a fixed number of requests each (after a warm-up of %d per side); %d flood requests.\n\n",
		p.rounds, p.round, p.workers, p.warmup, p.flood)
	t := table{w: &report, placement: pl.short()}
	t.header()

	client := newClient(p.workers)
	var measured runs
	var problems []error
	var f figures
	f.pinned, f.workers = pl.pinned, p.workers
	for _, kind := range []string{"/kib", "/sse"} {
		name := "pass-through " + kind
		step(name)
		pa, pb := kibProbe(client, siteA), kibProbe(client, siteB)
		if kind == "/sse" {
			pa, pb = sseProbe(client, siteA, sse), sseProbe(client, siteB, sse)
		}
		a, b := alternate(p, rounds{}, pa, pb)
		measured.add(name, "A", a)
		measured.add(name, "B", b)
		t.row(name+": correct answers/s", a.rps(), b.rps())
		t.row(name+": p50 ms", ms(a.p50), ms(b.p50))
		t.row(name+": p99 ms", ms(a.p99), ms(b.p99))
		if kind == "/sse" {
			t.row(name+": first event p50 ms", ms(a.first50), ms(b.first50))
			t.row(name+": first event p99 ms", ms(a.first99), ms(b.first99))
		}
		t.cpuRows(name, a, b)
		c := comparison{name: name, a: a, b: b}
		if kind == "/kib" {
			f.kib = c
		} else {
			f.sse = c
		}
	}

	step("provisioning: POST through Caddy vs the module's write made directly")
	// The baseline client keeps as many idle connections as the module's
	// (64): the library's default (GOMAXPROCS+1) would make it redial under
	// 8 workers and look slower than it is.
	vault.Root.CloneConfig().HttpClient.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	kv := vault.Root.KVv2(vaultMount)
	var (
		ids     atomic.Int64 // every write is a first provisioning: cas=0, one Vault round trip
		keys    atomic.Int64 // keys stored in Vault
		written [2]atomic.Value
	)
	// Both sides' ids have the same length, so are their records.
	newID := func(prefix string) func() string {
		return func() string { return fmt.Sprintf("%s%08d", prefix, ids.Add(1)) }
	}
	stored := func(side int) func(string) {
		return func(uid string) { keys.Add(1); written[side].CompareAndSwap(nil, uid) }
	}
	raw := rawPutProbe(kv, newID("r"), stored(0))
	post := postProbe(client, siteB, newID("p"), stored(1))
	wa, wb := warmUp(p, raw, post)
	measured.add("provisioning, warm-up", "A (raw KV v2 write)", wa)
	measured.add("provisioning, warm-up", "B (POST through Caddy)", wb)
	n := perRound(p, wa, wb)
	a, b := alternate(p, rounds{n: n, gauge: keys.Load}, raw, post)
	measured.add("provisioning", "A (raw KV v2 write)", a)
	measured.add("provisioning", "B (POST through Caddy)", b)
	t.row(fmt.Sprintf("provisioning: correct writes/s (A the module's record written directly, B POST through Caddy; %d per round)", n), a.rps(), b.rps())
	t.row("provisioning: p50 ms", ms(a.p50), ms(b.p50))
	t.row("provisioning: p99 ms", ms(a.p99), ms(b.p99))
	t.row("provisioning: keys stored in Vault when the side's rounds began, mean", mean(a.gauge), mean(b.gauge))
	t.cpuRows("provisioning", a, b)
	f.provision = comparison{name: "provisioning: POST / raw put", a: a, b: b}
	for side, prefix := range []string{baselinePrefix, modulePrefix} {
		uid, _ := written[side].Load().(string)
		if uid == "" {
			continue // no correct answer: the verdict says so
		}
		sec, err := kv.Get(context.Background(), prefix+"/"+uid)
		if err == nil {
			err = sameAsBaseline(sec.Data, uid, password)
		}
		if err != nil {
			problems = append(problems, fmt.Errorf("the baseline is not the module's write: %s/%s: %w", vaultMount, prefix, err))
		}
	}

	var profileTopText string
	if *profileDir != "" {
		step(fmt.Sprintf("profile: %d s of Caddy's CPU under POST load", p.profile))
		top, r, err := caddyProfile(pl, admin, *profileDir, p.profile, func(d time.Duration) result {
			return closedLoop(p.workers, d, 0, post)
		})
		measured.add("provisioning, while profiling", "B (POST through Caddy)", r)
		if err != nil {
			problems = append(problems, fmt.Errorf("profile: %w", err))
		}
		profileTopText = top
	}

	step(fmt.Sprintf("key flood: %d distinct user ids failing the format check", p.flood))
	before := rss(caddy.Pid())
	flood := closedLoop(p.workers, 10*time.Minute, p.flood, floodProbe(client, siteB))
	after := rss(caddy.Pid())
	measured.add("key flood (400 for each)", "B", flood)
	legit := closedLoop(1, time.Minute, 1, post)
	measured.add("key flood: a legitimate POST afterwards", "B", legit)
	floodLine := fmt.Sprintf("\nKey flood: %d requests (%s); Caddy RSS %.1f MiB before, %.1f MiB after (+%.1f MiB); a legitimate POST afterwards: %s.\n",
		flood.correct+flood.failures, flood, mib(before), mib(after), mib(after-before), map[bool]string{true: "200, served", false: "FAILED"}[legit.correct == 1])

	for _, rj := range []struct {
		name string
		want rejection
		id   func() string
		c    *comparison
	}{
		{"rejected: format 400", formatRejected, newID("f"), &f.format},
		{"rejected: 429", limitRejected, func() string { return overLimitPrefix + "00000001" }, &f.limit},
	} {
		step(rj.name)
		if rj.want == limitRejected {
			must(overLimit(client, siteB, rj.id()))
		}
		pa, pb := rejectProbe(client, siteA, rj.id, rj.want), rejectProbe(client, siteB, rj.id, rj.want)
		wa, wb := warmUp(p, pa, pb)
		measured.add(rj.name+", warm-up", "A (plain reverse_proxy)", wa)
		measured.add(rj.name+", warm-up", "B (the module)", wb)
		n := perRound(p, wa, wb)
		a, b := alternate(p, rounds{n: n}, pa, pb)
		measured.add(rj.name, "A (plain reverse_proxy)", a)
		measured.add(rj.name, "B (the module)", b)
		t.row(fmt.Sprintf("%s: correct answers/s (A plain reverse_proxy to a backend answering the same, B the module; %d per round)", rj.name, n), a.rps(), b.rps())
		t.row(rj.name+": p50 ms", ms(a.p50), ms(b.p50))
		t.row(rj.name+": p99 ms", ms(a.p99), ms(b.p99))
		t.cpuRows(rj.name, a, b)
		*rj.c = comparison{name: rj.name, a: a, b: b}
	}
	fmt.Fprint(&report, floodLine)

	step("limiter: go test -bench")
	args := []string{"test", "-run", "^$", "-bench", "Limiter", "-benchmem", limiterPackage}
	if *smoke {
		args = append(args, "-benchtime", "1x") // the benchmarks run; their figures mean nothing
	}
	var benchOut bytes.Buffer
	gt := pl.onAllCPUs("go", args...)
	gt.Stdout, gt.Stderr = &benchOut, os.Stderr
	if err := gt.Run(); err != nil {
		problems = append(problems, fmt.Errorf("go %s: %w; its output ends:\n%s", strings.Join(args, " "), err, tail(benchOut.String(), 20)))
	}
	fmt.Fprintf(&report, "\nLimiter (`go test -bench Limiter -benchmem %s`):\n\n```\n", limiterPackage)
	for _, line := range strings.Split(benchOut.String(), "\n") {
		if strings.HasPrefix(line, "Benchmark") {
			fmt.Fprintln(&report, line)
		}
	}
	fmt.Fprintln(&report, "```")

	if profileTopText != "" {
		fmt.Fprintf(&report, "\nCaddy's CPU profile under POST load (%d s, %d workers; `go tool pprof -top -nodecount=%d`, the profile is in %s):\n\n```\n%s```\n",
			p.profile, p.workers, profileTop, *profileDir, profileTopText)
	}

	fmt.Fprintf(&report, "\nSummary (A the baseline, B the module; CPU per correct answer):\n\n")
	summaryTable(&report, pl, []comparison{f.provision, f.format, f.limit, f.kib, f.sse})
	fmt.Fprintf(&report, "\nTargets (judged on this run; they never fail it):\n\n")
	targetTable(&report, targets(f))

	fmt.Fprint(&report, "\nAnswers (only correct ones count in the figures above):\n\n")
	measured.table(&report)

	fmt.Print("\n" + report.String())
	if *out != "" {
		must(os.WriteFile(*out, report.Bytes(), 0o644))
	}
	conclude(measured, problems)
}

// overLimit spends uid's attempts with malformed passwords until the
// module answers 429.
func overLimit(client *http.Client, site, uid string) error {
	for range 50 {
		resp, err := client.Do(provisionRequest(context.Background(), site, uid, "short", `{"username":"`+uid+`"}`))
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			return checkRejection(limitRejected, resp.StatusCode, resp.Header, body)
		}
		if err := checkRejection(formatRejected, resp.StatusCode, resp.Header, body); err != nil {
			return fmt.Errorf("spending the attempts of %s: %w", uid, err)
		}
	}
	return fmt.Errorf("%s is not out of attempts after 50 malformed passwords", uid)
}

// table is the report's main table: a row per measure and side.
type table struct {
	w         io.Writer
	placement string
}

func (t table) header() {
	fmt.Fprintln(t.w, "| measure | placement | A (baseline) | B (with the module) | B/A |")
	fmt.Fprintln(t.w, "|---|---|---|---|---|")
}

func (t table) row(name string, a, b float64) {
	r := "–"
	if a > 0 {
		r = fmt.Sprintf("%.3f", b/a)
	}
	fmt.Fprintf(t.w, "| %s | %s | %.4g | %.4g | %s |\n", name, t.placement, a, b, r)
}

// cpuRows reports CPU per correct answer for each process.
func (t table) cpuRows(label string, a, b result) {
	var totalA, totalB float64
	for i, pr := range processes {
		pa, pb := a.cpuPer(i), b.cpuPer(i)
		totalA, totalB = totalA+pa, totalB+pb
		t.row(fmt.Sprintf("%s: CPU µs per correct answer, %s", label, pr.name), pa, pb)
	}
	t.row(label+": CPU µs per correct answer, all", totalA, totalB)
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b int64) float64        { return float64(b) / (1 << 20) }

func step(s string) { fmt.Fprintln(os.Stderr, "bench:", s) }
