package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

// A probe sends one request and checks the answer the way the request's
// kind calls for (status and body, or the whole event stream): err is nil
// only for the correct answer, else it says what was wrong. first is how
// long the first event of a streamed answer took (0 for other kinds).
type probe func(ctx context.Context, seq int) (first time.Duration, err error)

// result is what one load run measured. Only correct answers count as
// throughput and latency: a fast 500 must not make a side look faster.
type result struct {
	correct  int   // answers that passed the probe's check
	failures int   // wrong answers
	firstErr error // the first wrong answer, for the report
	cut      int   // requests cut off unanswered by the run's end: neither
	cutErr   error // the last of them, to explain a run with no answer
	elapsed  time.Duration
	p50, p99 time.Duration // latency of the correct answers
	lat      []time.Duration
	// Time to the first event of a stream (correct answers; empty when the
	// probe does not stream): a proxy that buffers shows here.
	first50, first99 time.Duration
	firsts           []time.Duration
	cpu              []time.Duration // per process in processes, during these requests
	// A gauge read at the start of each round (alternate): the keys
	// stored in Vault, so the report shows both sides met a Vault as full.
	gauge []int64
}

// rps is the rate of correct answers.
func (r result) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.correct) / r.elapsed.Seconds()
}

func (r result) String() string {
	return fmt.Sprintf("%.0f correct answers/s, p50 %s, p99 %s, %d wrong",
		r.rps(), r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.failures)
}

// closedLoop runs workers that each send one request after another until
// the duration is over or maxRequests are sent (0: no bound). do gets a
// sequence number unique in the run.
func closedLoop(workers int, d time.Duration, maxRequests int, do probe) result {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		mu      sync.Mutex
		all     result
		next    int
		wg      sync.WaitGroup
		started = time.Now()
	)
	for range workers {
		wg.Go(func() {
			var local result
			local.lat = make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				mu.Lock()
				seq := next
				next++
				mu.Unlock()
				if maxRequests > 0 && seq >= maxRequests {
					break
				}
				t := time.Now()
				first, err := do(ctx, seq)
				took := time.Since(t)
				switch {
				case err == nil:
					local.correct++
					local.lat = append(local.lat, took)
					if first > 0 {
						local.firsts = append(local.firsts, first)
					}
				case ctx.Err() != nil:
					// Cut off by the deadline: not an answer at all.
					local.cut++
					local.cutErr = err
				default:
					local.failures++
					if local.firstErr == nil {
						local.firstErr = err
					}
				}
			}
			mu.Lock()
			all = pool(all, local)
			mu.Unlock()
		})
	}
	wg.Wait()
	all.elapsed = time.Since(started)
	return summarize(all)
}

// pool adds b's counts and samples to a's (elapsed excepted).
func pool(a, b result) result {
	a.correct += b.correct
	a.failures += b.failures
	if a.firstErr == nil {
		a.firstErr = b.firstErr
	}
	a.cut += b.cut
	if b.cutErr != nil {
		a.cutErr = b.cutErr
	}
	a.lat = append(a.lat, b.lat...)
	a.firsts = append(a.firsts, b.firsts...)
	return a
}

// summarize sorts the samples and takes the percentiles.
func summarize(r result) result {
	pct := func(s []time.Duration, p float64) time.Duration {
		if len(s) == 0 {
			return 0
		}
		return s[min(len(s)-1, int(p*float64(len(s))))]
	}
	slices.Sort(r.lat)
	slices.Sort(r.firsts)
	r.p50, r.p99 = pct(r.lat, 0.50), pct(r.lat, 0.99)
	r.first50, r.first99 = pct(r.firsts, 0.50), pct(r.firsts, 0.99)
	return r
}

// merge pools the rounds of one side.
func merge(rs []result) result {
	var all result
	for _, r := range rs {
		all = pool(all, r)
		all.elapsed += r.elapsed
	}
	return summarize(all)
}

// newClient is an HTTP client that keeps a connection per worker.
func newClient(workers int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = workers*2, workers*2
	return &http.Client{Transport: t}
}

// roundLimit bounds a round of a fixed number of requests: only a harness
// or a server that hangs ever reaches it.
const roundLimit = 2 * time.Minute

// rounds says how alternate cuts a scenario's rounds.
type rounds struct {
	// n is the requests per side per round; 0: a round lasts plan.round.
	// With a fixed count, alternating rounds (A B B A A B …, an even
	// number) leave each side as many writes behind it on average.
	n     int
	gauge func() int64 // read at the start of each round of each side; nil: none
}

// alternate runs A and B in turns, round after round, swapping which goes
// first, so drift in the machine's load (and in Vault's keys stored)
// falls on both alike. It also sums the CPU each process spent during
// each side's rounds.
func alternate(p plan, rd rounds, a, b probe) (result, result) {
	var ra, rb []result
	var ga, gb []int64
	cpuA, cpuB := make([]time.Duration, len(processes)), make([]time.Duration, len(processes))
	run := func(f probe, rs *[]result, cpu []time.Duration, g *[]int64) {
		if rd.gauge != nil {
			*g = append(*g, rd.gauge())
		}
		before := make([]time.Duration, len(processes))
		for i, pr := range processes {
			before[i] = cpuTime(pr.pid)
		}
		d := p.round
		if rd.n > 0 {
			d = roundLimit
		}
		*rs = append(*rs, closedLoop(p.workers, d, rd.n, f))
		for i, pr := range processes {
			cpu[i] += cpuTime(pr.pid) - before[i]
		}
	}
	for i := range p.rounds {
		if i%2 == 0 {
			run(a, &ra, cpuA, &ga)
			run(b, &rb, cpuB, &gb)
		} else {
			run(b, &rb, cpuB, &gb)
			run(a, &ra, cpuA, &ga)
		}
	}
	A, B := merge(ra), merge(rb)
	A.cpu, B.cpu = cpuA, cpuB
	A.gauge, B.gauge = ga, gb
	return A, B
}

// warmUp sends p.warmup requests on each side, A first then B: the
// connections are open and the caches warm before the measured rounds,
// the rates tell perRound how long a round of n requests lasts, and both
// sides leave as many keys behind.
func warmUp(p plan, a, b probe) (result, result) {
	return closedLoop(p.workers, roundLimit, p.warmup, a), closedLoop(p.workers, roundLimit, p.warmup, b)
}

// perRound is the number of requests per side per round for which a
// round lasts about p.round at the mean of the two warm-up rates; at
// least 4 per worker.
func perRound(p plan, a, b result) int {
	n := int((a.rps() + b.rps()) / 2 * p.round.Seconds())
	return max(n, 4*p.workers)
}

// mean is the mean of a gauge's readings.
func mean(xs []int64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var sum int64
	for _, x := range xs {
		sum += x
	}
	return float64(sum) / float64(len(xs))
}
