package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

// result is what one load run measured.
type result struct {
	requests int
	failures int
	elapsed  time.Duration
	p50, p99 time.Duration
	lat      []time.Duration // sorted
	cpu      []time.Duration // per process in processes, during these requests
}

func (r result) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r result) String() string {
	return fmt.Sprintf("%.0f req/s, p50 %s, p99 %s, %d failed", r.rps(), r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.failures)
}

// closedLoop runs workers that each send one request after another until
// the duration is over or maxRequests are sent (0: no bound). do gets the
// worker and a sequence number unique in the run, and reports success.
func closedLoop(workers int, d time.Duration, maxRequests int, do func(ctx context.Context, worker, seq int) bool) result {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		mu      sync.Mutex
		lat     []time.Duration
		fails   int
		next    int
		wg      sync.WaitGroup
		started = time.Now()
	)
	for w := range workers {
		wg.Go(func() {
			local := make([]time.Duration, 0, 4096)
			localFails := 0
			for ctx.Err() == nil {
				mu.Lock()
				seq := next
				next++
				mu.Unlock()
				if maxRequests > 0 && seq >= maxRequests {
					break
				}
				t := time.Now()
				ok := do(ctx, w, seq)
				if ctx.Err() != nil && !ok {
					break // cut off by the deadline: not a failure
				}
				local = append(local, time.Since(t))
				if !ok {
					localFails++
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			fails += localFails
			mu.Unlock()
		})
	}
	wg.Wait()
	return summarize(lat, fails, time.Since(started))
}

// summarize sorts the latencies and takes the percentiles.
func summarize(lat []time.Duration, fails int, elapsed time.Duration) result {
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	return result{requests: len(lat), failures: fails, elapsed: elapsed, p50: pct(0.50), p99: pct(0.99), lat: lat}
}

// merge pools the rounds of one side.
func merge(rs []result) result {
	var (
		lat     []time.Duration
		fails   int
		elapsed time.Duration
	)
	for _, r := range rs {
		lat = append(lat, r.lat...)
		fails += r.failures
		elapsed += r.elapsed
	}
	return summarize(lat, fails, elapsed)
}

// newClient is an HTTP client that keeps a connection per worker.
func newClient(workers int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = workers*2, workers*2
	return &http.Client{Transport: t}
}
