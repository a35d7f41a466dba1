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
