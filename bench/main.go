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
// CI). It asserts nothing: it reports.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
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

	"github.com/hashicorp/vault/api"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
)

const password = "Abcde-Fghij-Klmno-Pqrst-Uvwxy"

// plan is how long and how hard each part runs.
type plan struct {
	rounds  int
	round   time.Duration
	workers int
	flood   int
}

type cleanups []func()

func (c *cleanups) Cleanup(f func()) { *c = append(*c, f) }

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
	defer os.RemoveAll(dir)
	var cl cleanups
	defer func() {
		for _, f := range cl {
			f()
		}
	}()

	step("building Caddy with the module (cmd/caddy)")
	bin := filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	build.Stderr = os.Stderr
	must(build.Run())

	step("starting the dev Vault, the fake Nextcloud and the backend")
	vault, err := devvault.Run(devvault.Options{})
	must(err)
	cl.Cleanup(vault.Stop)
	nc := fakenextcloud.New(&cl)
	nc.AcceptAnyUser(password)
	backend, stopBackend := startBackend()
	cl.Cleanup(stopBackend)

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
	defer caddy.Stop()
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
	get := func(base, path string) func(context.Context, int, int) bool {
		return func(ctx context.Context, _, _ int) bool {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
			return send(client, req) == http.StatusOK
		}
	}
	for _, path := range []string{"/kib", "/sse"} {
		step("pass-through " + path)
		a, b := alternate(p, p.workers, get(siteA, path), get(siteB, path))
		row(&report, "pass-through "+path+": req/s", a.rps(), b.rps())
		row(&report, "pass-through "+path+": p50 ms", ms(a.p50), ms(b.p50))
		row(&report, "pass-through "+path+": p99 ms", ms(a.p99), ms(b.p99))
		cpuRows(&report, "pass-through "+path, a, b)
	}

	step("provisioning: POST through Caddy vs raw KV v2 writes")
	// The baseline client keeps as many idle connections as the module's
	// (64): the library's default (GOMAXPROCS+1) would make it redial under
	// 8 workers and look slower than it is.
	vault.Root.CloneConfig().HttpClient.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	kv := vault.Root.KVv2("secret")
	var ids atomic.Int64 // every write is a first provisioning: cas=0, one Vault round trip
	raw := func(ctx context.Context, _, _ int) bool {
		id := fmt.Sprintf("r%d", ids.Add(1))
		_, err := kv.Put(ctx, "bench/raw/"+id, map[string]any{
			"user_id": id, "app_password": password, "username": id, "scopes": nil,
			"created_at": time.Now().Unix(), "updated_at": time.Now().Unix(),
		}, api.WithCheckAndSet(0))
		return err == nil
	}
	post := func(ctx context.Context, _, _ int) bool {
		id := fmt.Sprintf("p%d", ids.Add(1))
		return provision(ctx, client, siteB, id, password, `{"username":"`+id+`"}`) == http.StatusOK
	}
	a, b := alternate(p, p.workers, raw, post)
	row(&report, "provisioning: writes/s (A raw Vault KV v2 cas=0, B POST through Caddy)", a.rps(), b.rps())
	row(&report, "provisioning: p50 ms", ms(a.p50), ms(b.p50))
	row(&report, "provisioning: p99 ms", ms(a.p99), ms(b.p99))
	cpuRows(&report, "provisioning", a, b)
	if a.failures+b.failures > 0 {
		fmt.Fprintf(&report, "\nprovisioning failures: raw %d, POST %d\n", a.failures, b.failures)
	}

	step(fmt.Sprintf("key flood: %d distinct user ids failing the format check", p.flood))
	before := rss(caddy.Pid())
	flood := closedLoop(p.workers, 10*time.Minute, p.flood, func(ctx context.Context, _, seq int) bool {
		return provision(ctx, client, siteB, fmt.Sprintf("flood%07d", seq), "short", "") == http.StatusBadRequest
	})
	after := rss(caddy.Pid())
	legit := post(context.Background(), 0, -1)
	fmt.Fprintf(&report, "\nKey flood: %d requests (%s); Caddy RSS %.1f MiB before, %.1f MiB after (+%.1f MiB); a legitimate POST afterwards: %v.\n",
		flood.requests, flood, mib(before), mib(after), mib(after-before), map[bool]string{true: "200, served", false: "FAILED"}[legit])

	step("limiter: go test -bench")
	args := []string{"test", "-run", "^$", "-bench", "Limiter", "-benchmem", "./caddyapppw"}
	if *smoke {
		args = append(args, "-benchtime", "100x")
	}
	var benchOut bytes.Buffer
	gt := exec.Command("go", args...)
	gt.Stdout, gt.Stderr = &benchOut, os.Stderr
	must(gt.Run())
	fmt.Fprintln(&report, "\nLimiter (`go test -bench Limiter -benchmem ./caddyapppw`):\n\n```")
	for _, line := range strings.Split(benchOut.String(), "\n") {
		if strings.HasPrefix(line, "Benchmark") {
			fmt.Fprintln(&report, line)
		}
	}
	fmt.Fprintln(&report, "```")

	fmt.Print("\n" + report.String())
	if *out != "" {
		must(os.WriteFile(*out, report.Bytes(), 0o644))
	}
}

// processes are the programs whose CPU the report divides among requests.
var processes []struct {
	name string
	pid  int
}

// provision is Astrolabe's POST for user id with password; body may be "".
func provision(ctx context.Context, client *http.Client, site, id, pw, body string) int {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, site+"/api/v1/users/"+id+"/app-password", strings.NewReader(body))
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(id+":"+pw)))
	req.Header.Set("Content-Type", "application/json")
	return send(client, req)
}

// send runs req, reads the whole answer and returns its status (0 when
// there was none).
func send(client *http.Client, req *http.Request) int {
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0
	}
	return resp.StatusCode
}

// alternate runs A and B in turns, round after round, swapping which goes
// first, so drift in the machine's load falls on both alike. It also sums
// the CPU each process spent during each side's rounds.
func alternate(p plan, workers int, a, b func(context.Context, int, int) bool) (result, result) {
	var ra, rb []result
	cpuA, cpuB := make([]time.Duration, len(processes)), make([]time.Duration, len(processes))
	run := func(f func(context.Context, int, int) bool, rs *[]result, cpu []time.Duration) {
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

// cpuRows reports CPU per request for each process.
func cpuRows(w io.Writer, label string, a, b result) {
	var totalA, totalB float64
	for i, pr := range processes {
		pa, pb := perRequestMicros(a.cpu[i], a.requests), perRequestMicros(b.cpu[i], b.requests)
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
