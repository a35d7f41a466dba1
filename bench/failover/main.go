// Command failover measures what clients see when the parts under the
// app_password module die in the middle of traffic, and checks what must
// hold regardless. It starts three Vault nodes on integrated storage
// (tools/devvault's raft mode), Redis with a replica and three sentinels,
// and three Caddy replicas built from cmd/caddy, each with its own
// reverse_proxy in front of the Vault nodes. A round-robin client runs
// steady POST/GET load for 20 users per replica plus a few accounts
// sending wrong passwords, then kills with SIGKILL, one after the other:
// (a) the active Vault node, (b) the Redis primary, (c) one Caddy replica.
//
// For each it reports the answers by status, the longest gap with no 200,
// how long until the rate of 200s was back to 90 % of before, and Vault's
// and Redis's state afterwards. It exits non-zero unless:
//
//   - every answer is its route's 200 or a 503 with Retry-After;
//   - every user's record in Vault is the change of its last 200, or of a
//     POST sent after it whose answer was not a 200;
//   - no load user (all of them send the right password) has an attempt
//     counted on Redis;
//   - each attacker account got at most attempts × (1 + replicas) failed
//     checks: the shared limit, plus each replica's own in-process limit
//     while Redis was away (on_error local);
//   - the surviving replicas run no more goroutines after recovery than
//     before the failures (connection goroutines aside).
//
// Run from the repository root: `go run ./bench/failover` (about 3
// minutes), `-smoke` (CI: short phases, few users), `-out FILE` to write
// the report as Markdown too.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/atexit"
)

const password = "Abcde-Fghij-Klmno-Pqrst-Uvwxy"

// plan is how long and how hard the run is.
type plan struct {
	usersPerReplica int
	attackers       int
	warmup, steady  time.Duration // before the first failure; the baseline
	after           time.Duration // each failure's phase, at least
}

// atExit holds what the run started, stopped last first at its end or
// when it fails.
var atExit atexit.Cleanups

func main() {
	smoke := flag.Bool("smoke", false, "short phases and few users (CI: the harness and the guarantees; the figures mean little)")
	out := flag.String("out", "", "also write the report, as Markdown, to this file")
	flag.Parse()
	p := plan{usersPerReplica: 20, attackers: 3, warmup: 5 * time.Second, steady: 10 * time.Second, after: 20 * time.Second}
	if *smoke {
		p = plan{usersPerReplica: 3, attackers: 2, warmup: 2 * time.Second, steady: 3 * time.Second, after: 8 * time.Second}
	}
	dir, err := os.MkdirTemp("", "caddy-apppw-failover")
	must(err)
	atExit.Cleanup(func() { _ = os.RemoveAll(dir) })
	defer atExit.Run()

	step("building Caddy with the module (cmd/caddy)")
	bin := filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	build.Stderr = os.Stderr
	must(build.Run())

	s := startStack(bin, dir, 3)
	var report bytes.Buffer
	r := run(s, p, &report)
	fmt.Print(report.String())
	if *out != "" {
		must(os.WriteFile(*out, report.Bytes(), 0o644))
	}
	if len(r) > 0 {
		for _, v := range r {
			fmt.Fprintln(os.Stderr, "VIOLATED:", v)
		}
		atExit.Run()
		os.Exit(1)
	}
	fmt.Println("all hard requirements hold")
}

func step(msg string) { fmt.Fprintf(os.Stderr, "== %s %s\n", time.Now().Format("15:04:05"), msg) }

func must(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "failover:", msg)
	atExit.Run()
	os.Exit(1)
}
