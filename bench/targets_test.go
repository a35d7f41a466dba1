package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// side is a result of n correct answers in one second, with the given
// latencies and CPU of Vault and Caddy.
func side(n int, p50, p99 time.Duration, vault, caddy time.Duration) result {
	return result{correct: n, elapsed: time.Second, p50: p50, p99: p99,
		cpu: []time.Duration{procVault: vault, procCaddy: caddy, procBench: 0}}
}

func TestTargetsVerdicts(t *testing.T) {
	ms := time.Millisecond
	f := figures{
		pinned:  true,
		workers: 8,
		// 900 POST/s against 1000 raw put/s: 0.9, met. Vault 468 µs per
		// POST against 450: 1.04, met. Caddy 180 µs per POST: met.
		provision: comparison{name: "provisioning",
			a: side(1000, 1*ms, 4*ms, 450*ms, 0),
			b: side(900, 2*ms, 6*ms, 421200*time.Microsecond, 162*ms)},
		// 25 µs per 400: met; 31 µs per 429: not met.
		format: comparison{name: "format", a: side(1000, ms, ms, 0, 90*ms), b: side(1000, ms, ms, 0, 25*ms)},
		limit:  comparison{name: "limit", a: side(1000, ms, ms, 0, 90*ms), b: side(1000, ms, ms, 0, 31*ms)},
		// /kib: 0.98 and p99 1.05: met; /sse: 0.97 and p99 1.06: not met.
		kib: comparison{name: "pass-through /kib", a: side(1000, ms, 20*ms, 0, 0), b: side(980, ms, 21*ms, 0, 0)},
		sse: comparison{name: "pass-through /sse", a: side(1000, ms, 100*ms, 0, 0), b: side(970, ms, 106*ms, 0, 0)},
	}
	var w bytes.Buffer
	targetTable(&w, targets(f))
	want := `| target | measured | verdict |
|---|---|---|
| POST rate ≥ 0.9 × raw put rate of the same record, Vault on a core of its own | 900 POST/s, 1000 raw put/s: 0.900× | met |
| Vault CPU per module write within 5 % of the baseline's | 468 µs per POST, 450 µs per raw put: 1.040× | met |
| Caddy CPU per POST ≤ 200 µs | 180 µs | met |
| Caddy CPU per rejected request (format 400) ≤ 30 µs | 25.0 µs (the same request through plain reverse_proxy: 90.0 µs) | met |
| Caddy CPU per rejected request (429) ≤ 30 µs | 31.0 µs (the same request through plain reverse_proxy: 90.0 µs) | not met |
| pass-through /kib: rate ≥ 0.98 × plain reverse_proxy | 980/s, 1000/s: 0.980× | met |
| pass-through /kib: p99 within 5 % of plain reverse_proxy | 21.00 ms, 20.00 ms: 1.050× | met |
| pass-through /sse: rate ≥ 0.98 × plain reverse_proxy | 970/s, 1000/s: 0.970× | not met |
| pass-through /sse: p99 within 5 % of plain reverse_proxy | 106.00 ms, 100.00 ms: 1.060× | not met |
| p99 of a POST at 8 workers, beside the raw put's | POST p50 2.00 ms, p99 6.00 ms; raw put p50 1.00 ms, p99 4.00 ms | reported |
`
	if w.String() != want {
		t.Errorf("targets:\n%s\nwant:\n%s", w.String(), want)
	}

	// The other side of each line: too slow a POST, a Vault figure 6 %
	// off either way, Caddy over its ceiling, cores shared.
	f.pinned = false
	f.provision.b = side(899, ms, ms, 477*ms, 201*ms)
	got := targets(f)
	for i, wantMeasured := range []string{
		"899 POST/s, 1000 raw put/s: 0.899×; cores shared, the target is for -pin",
		"531 µs per POST, 450 µs per raw put: 1.179×",
		"224 µs",
	} {
		if got[i].measured != wantMeasured || got[i].verdict() != "not met" {
			t.Errorf("line %d: %q %s; want %q not met", i, got[i].measured, got[i].verdict(), wantMeasured)
		}
	}
	f.provision.b = side(1000, ms, ms, 423*ms, 0)
	if v := targets(f)[1]; v.met || !strings.HasSuffix(v.measured, "0.940×") {
		t.Errorf("Vault 6 %% cheaper per module write: %q %s; want not met (the baseline is not the same write)", v.measured, v.verdict())
	}
}

// TestTargetsWithoutFigures: a side without correct answers gives no
// figure, and no figure is never "met".
func TestTargetsWithoutFigures(t *testing.T) {
	for _, tg := range targets(figures{workers: 8}) {
		if tg.met {
			t.Errorf("%s: met on no figures (%s)", tg.what, tg.measured)
		}
	}
	if got := targets(figures{})[0].measured; !strings.Contains(got, "no figure") {
		t.Errorf("rate ratio without answers: %q, want \"no figure\"", got)
	}
}

func TestSummaryTable(t *testing.T) {
	ms := time.Millisecond
	var w bytes.Buffer
	summaryTable(&w, placement{pinned: true}, []comparison{{name: "provisioning: POST / raw put",
		a: side(1551, 3*ms, 9*ms, 995742*time.Microsecond, 0), b: side(1273, 5*ms, 12*ms, 865640*time.Microsecond, 509200*time.Microsecond)}})
	want := `| scenario | placement | B correct answers/s | A correct answers/s | B/A | Vault CPU per answer B / A | Caddy CPU per answer B / A | p50 B / A | p99 B / A |
|---|---|---|---|---|---|---|---|---|
| provisioning: POST / raw put | pinned | 1273 | 1551 | 0.821× | 680 µs / 642 µs | 400 µs / 0.0 µs | 5.00 ms / 3.00 ms | 12.00 ms / 9.00 ms |
`
	if w.String() != want {
		t.Errorf("summary:\n%s\nwant:\n%s", w.String(), want)
	}
}
