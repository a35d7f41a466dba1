package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-apppw/caddy-apppw/internal/ratelimit"
)

// phase is one failure and the traffic after it.
type phase struct {
	name     string
	killedAt time.Time
	end      time.Time
	note     string // what took over, and when
}

// load runs the users and attackers until its stop is called.
type load struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

func startLoad(c *client, rec *recorder, s *stack, p plan) *load {
	l := &load{stop: make(chan struct{})}
	for i := range len(s.replicas) * p.usersPerReplica {
		uid := fmt.Sprintf("u%03d", i+1)
		l.wg.Go(func() { userLoop(c, rec, uid, l.stop) })
	}
	for i := range p.attackers {
		uid := fmt.Sprintf("attacker%d", i+1)
		l.wg.Go(func() { attackerLoop(c, rec, uid, 250*time.Millisecond, l.stop) })
	}
	return l
}

func (l *load) end() {
	close(l.stop)
	l.wg.Wait()
}

// run drives the load and the failures, writes the report to w and
// returns the hard requirements violated.
func run(s *stack, p plan, w io.Writer) []string {
	rec := newRecorder()
	c := newClient(s.replicas)

	step("warm-up")
	l := startLoad(c, rec, s, p)
	time.Sleep(p.warmup)
	l.end()
	c.http.CloseIdleConnections()
	before := goroutines(s)

	step("steady load")
	l = startLoad(c, rec, s, p)
	steadyStart := time.Now()
	time.Sleep(p.steady)
	baseline := rate200(rec, steadyStart, time.Now())

	var phases []*phase
	// (a) the active Vault node.
	active := s.vault.Active()
	if active == nil {
		fail("no active Vault node before the failure")
	}
	ph := &phase{name: "(a) kill -9 the active Vault node", killedAt: time.Now()}
	step(ph.name + " " + active.Addr)
	epoch.Add(1)
	active.Kill()
	if n, err := s.vault.WaitActive(2 * time.Minute); err == nil {
		ph.note = fmt.Sprintf("%s active after %s", n.Addr, time.Since(ph.killedAt).Round(100*time.Millisecond))
	} else {
		ph.note = err.Error()
	}
	time.Sleep(time.Until(ph.killedAt.Add(p.after)))
	ph.end = time.Now()
	phases = append(phases, ph)

	// (b) the Redis primary.
	primary, err := s.redis.PrimaryAddr()
	must(err)
	ph = &phase{name: "(b) kill -9 the Redis primary", killedAt: time.Now()}
	step(ph.name + " " + primary)
	epoch.Add(1)
	s.redis.Server(primary).Kill()
	if a, err := s.redis.WaitFailover(primary, 2*time.Minute); err == nil {
		ph.note = fmt.Sprintf("sentinels promoted %s after %s", a, time.Since(ph.killedAt).Round(100*time.Millisecond))
	} else {
		ph.note = err.Error()
	}
	time.Sleep(time.Until(ph.killedAt.Add(p.after)))
	ph.end = time.Now()
	phases = append(phases, ph)

	// (c) one Caddy replica.
	victim := s.replicas[len(s.replicas)-1]
	ph = &phase{name: "(c) kill -9 one Caddy replica", killedAt: time.Now(), note: victim.name + " gone; the client skips it"}
	step(ph.name + " " + victim.name)
	epoch.Add(1)
	victim.proc.Kill()
	time.Sleep(p.after)
	ph.end = time.Now()
	phases = append(phases, ph)

	l.end()
	c.http.CloseIdleConnections()
	step("checking")
	after := goroutines(s)
	stateAfter := append(prefixed("Vault: ", vaultState(s)), prefixed("Redis: ", redisState(s))...)

	step("restarting the killed Vault node and Redis primary")
	var back []string
	start := time.Now()
	if err := active.Restart(); err != nil {
		back = append(back, "Vault: the killed node did not come back: "+err.Error())
	} else {
		h, err := active.Root.Sys().Health()
		if err != nil || h.Sealed || !h.Standby {
			back = append(back, fmt.Sprintf("Vault: the killed node came back as %+v (%v)", h, err))
		} else {
			back = append(back, fmt.Sprintf("Vault: the killed node, restarted on its raft directory, is an unsealed standby %s after its start", time.Since(start).Round(100*time.Millisecond)))
		}
	}
	old := s.redis.Server(primary)
	if err := old.Revive(); err != nil {
		back = append(back, "Redis: the old primary did not come back: "+err.Error())
	} else {
		start = time.Now()
		if err := s.redis.WaitReplica(primary, time.Minute); err != nil {
			back = append(back, "Redis: "+err.Error())
		} else {
			back = append(back, fmt.Sprintf("Redis: the old primary, restarted (empty), is a replica in sync with the new one %s later (the sentinels reconfigured it)", time.Since(start).Round(100*time.Millisecond)))
		}
	}

	fmt.Fprintf(w, "Three Caddy replicas (round-robin client, %d users per replica each provisioning once per phase and otherwise changing its scopes, a GET after each change, %d accounts sending a wrong password every 250 ms), a three-node Vault cluster on integrated storage behind each replica's own reverse_proxy (health check on /v1/sys/health), Redis with one replica and three sentinels (down-after 1 s). rate_limit %d 1h on Redis, on_error local.\n\n",
		p.usersPerReplica, p.attackers, attempts)
	fmt.Fprintf(w, "Before the failures: %.0f answers 200/s.\n\n", baseline)
	fmt.Fprintln(w, "| failure | answers by status | longest gap with no 200 | back to ≥ 90 % of the 200s/s before | what took over |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, ph := range phases {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", ph.name, byStatus(rec, ph.killedAt, ph.end),
			longestGap(rec, ph.killedAt, ph.end).Round(10*time.Millisecond), recovery(rec, ph, baseline), ph.note)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "(status 0: no answer — connection cut by the killed replica.)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "State afterwards:")
	fmt.Fprintln(w)
	for _, line := range stateAfter {
		fmt.Fprintln(w, "- "+line)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Then, the killed ones restarted:")
	fmt.Fprintln(w)
	for _, line := range back {
		fmt.Fprintln(w, "- "+line)
	}
	fmt.Fprintln(w)

	violations := checkAnswers(rec)
	violations = append(violations, checkRecords(s, rec)...)
	violations = append(violations, checkCounted(s, rec)...)
	bound := attempts * (1 + len(s.replicas))
	var fails []string
	for uid, n := range rec.attackerFailures {
		fails = append(fails, fmt.Sprintf("%s %d", uid, n))
		if n > bound {
			violations = append(violations, fmt.Sprintf("%s: %d failed checks, more than %d", uid, n, bound))
		}
	}
	sort.Strings(fails)
	fmt.Fprintf(w, "Failed checks (401) per attacker account: %s; bound %d = %d shared + %d per replica while Redis was away. Other answers: %v.\n\n",
		strings.Join(fails, ", "), bound, attempts, attempts, rec.attackerOther)
	for _, r := range s.replicas {
		if !r.alive() {
			continue
		}
		b, a := before[r.name], after[r.name]
		fmt.Fprintf(w, "Goroutines of %s: %d before the failures, %d after (without connection goroutines: %d, %d).\n", r.name, b.total, a.total, b.rest, a.rest)
		if a.rest > b.rest {
			violations = append(violations, fmt.Sprintf("%s: %d goroutines after recovery, %d before", r.name, a.rest, b.rest))
		}
	}
	fmt.Fprintln(w)
	return violations
}

func prefixed(p string, lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = p + l
	}
	return out
}

// rate200 is the 200s per second between from and to.
func rate200(rec *recorder, from, to time.Time) float64 {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	n := 0
	for _, a := range rec.answers {
		if a.status == 200 && !a.at.Before(from) && a.at.Before(to) {
			n++
		}
	}
	return float64(n) / to.Sub(from).Seconds()
}

func byStatus(rec *recorder, from, to time.Time) string {
	rec.mu.Lock()
	counts := map[int]int{}
	for _, a := range rec.answers {
		if !a.at.Before(from) && a.at.Before(to) {
			counts[a.status]++
		}
	}
	rec.mu.Unlock()
	var keys []int
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d: %d", k, counts[k]))
	}
	return strings.Join(parts, ", ")
}

// longestGap is the longest time with no 200 that overlaps [from, to],
// counting from the last 200 before from.
func longestGap(rec *recorder, from, to time.Time) time.Duration {
	rec.mu.Lock()
	var oks []time.Time
	for _, a := range rec.answers {
		if a.status == 200 && a.at.Before(to) {
			oks = append(oks, a.at)
		}
	}
	rec.mu.Unlock()
	slices.SortFunc(oks, func(a, b time.Time) int { return a.Compare(b) })
	var longest time.Duration
	prev := from
	for _, t := range oks {
		if t.Before(from) {
			prev = t
			continue
		}
		longest = max(longest, t.Sub(prev))
		prev = t
	}
	return max(longest, to.Sub(prev))
}

// recovery is when, after the kill, a one-second window first held at
// least 90 % of the baseline's 200s.
func recovery(rec *recorder, ph *phase, baseline float64) string {
	for t := ph.killedAt; t.Add(time.Second).Before(ph.end) || t.Add(time.Second).Equal(ph.end); t = t.Add(100 * time.Millisecond) {
		if rate200(rec, t, t.Add(time.Second)) >= 0.9*baseline {
			return fmt.Sprintf("%s", t.Add(time.Second).Sub(ph.killedAt).Round(100*time.Millisecond))
		}
	}
	return fmt.Sprintf("not within %s", ph.end.Sub(ph.killedAt).Round(time.Second))
}

func checkAnswers(rec *recorder) []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var wrong []string
	for _, a := range rec.answers {
		if a.wrong != "" {
			wrong = append(wrong, a.wrong)
		}
	}
	if len(wrong) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%d wrong answers, e.g. %v", len(wrong), wrong[:min(5, len(wrong))])}
}

// checkRecords reads every user's record from Vault's active node: the
// change of its last 200, or of a POST after it without a 200.
func checkRecords(s *stack, rec *recorder) []string {
	active, err := s.vault.WaitActive(time.Minute)
	if err != nil {
		return []string{err.Error()}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var bad []string
	for uid, u := range rec.users {
		sec, err := active.Root.Logical().Read("secret/data/nextcloud-mcp/app-passwords/" + uid)
		if err != nil {
			return []string{"reading Vault: " + err.Error()}
		}
		var scope string
		if sec != nil && sec.Data["data"] != nil {
			d := sec.Data["data"].(map[string]any)
			if sc, _ := d["scopes"].([]any); len(sc) == 1 {
				scope, _ = sc[0].(string)
			}
			if d["app_password"] != password || d["user_id"] != uid {
				bad = append(bad, fmt.Sprintf("%s: Vault holds %v", uid, d))
				continue
			}
		}
		switch {
		case scope == "" && u.provisioned:
			bad = append(bad, uid+": answered 200 but Vault has no record")
		case scope != "" && scope != u.last && !slices.Contains(u.unknown, scope):
			bad = append(bad, fmt.Sprintf("%s: Vault holds %q, the last 200 was %q, later attempts %v", uid, scope, u.last, u.unknown))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%d records wrong, e.g. %v", len(bad), bad[:min(5, len(bad))])}
}

// checkCounted looks on Redis's primary for the attempts counted against
// each load user: all of them send the right password, and only their
// POSTs answered 200 may count; one more is a request that failed for a
// failure and was counted.
func checkCounted(s *stack, rec *recorder) []string {
	primary, err := s.redis.PrimaryAddr()
	if err != nil {
		return []string{err.Error()}
	}
	rc := redis.NewClient(&redis.Options{Addr: primary})
	defer rc.Close()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var bad []string
	for uid := range rec.users {
		members, err := rc.ZRange(context.Background(), "caddy-apppw:"+s.nc.URL+":"+ratelimit.AccountKey(uid), 0, -1).Result()
		if err != nil {
			return []string{"reading Redis: " + err.Error()}
		}
		n := 0
		for _, m := range members {
			if strings.HasPrefix(m, "c:") {
				n++
			}
		}
		if u := rec.users[uid]; n > u.posts200 {
			bad = append(bad, fmt.Sprintf("%s: %d counted, %d POSTs answered 200", uid, n, u.posts200))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%d load users have counted attempts: %v", len(bad), bad[:min(5, len(bad))])}
}

// goroutineCount is a replica's goroutines, all and without those that
// serve or hold a connection (their number follows the connections the
// pools keep, not leaks).
type goroutineCount struct{ total, rest int }

func goroutines(s *stack) map[string]goroutineCount {
	// Let connections that were just closed wind down.
	time.Sleep(2 * time.Second)
	out := map[string]goroutineCount{}
	for _, r := range s.replicas {
		if !r.alive() {
			continue
		}
		resp, err := http.Get("http://" + r.admin + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out[r.name] = countGoroutines(string(b))
	}
	return out
}

// countGoroutines reads a debug=1 goroutine profile: groups of "N @ ..."
// followed by their stack.
func countGoroutines(profile string) goroutineCount {
	var c goroutineCount
	for _, group := range strings.Split(profile, "\n\n") {
		var n int
		if _, err := fmt.Sscanf(group, "%d @", &n); err != nil {
			continue
		}
		c.total += n
		if !strings.Contains(group, "net/http.(*persistConn)") && !strings.Contains(group, "net/http.(*conn).serve") &&
			!strings.Contains(group, "net/http.(*http2") {
			c.rest += n
		}
	}
	return c
}
