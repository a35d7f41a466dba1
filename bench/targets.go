package main

import (
	"fmt"
	"io"
	"math"
	"time"
)

// The targets of the module's cost, judged on one run's figures. They are
// reported as "met" or "not met" with the numbers and never fail the run:
// timing on a shared machine is noise a test must not depend on. Only a
// wrong answer fails the run (verdict.go).

// comparison is one scenario's two sides: A the baseline, B the module.
type comparison struct {
	name string
	a, b result
}

// figures are the comparisons the targets are judged on.
type figures struct {
	pinned    bool
	workers   int
	provision comparison // A raw KV v2 put of the module's record, B POST through Caddy
	format    comparison // A the same POST through plain reverse_proxy, B the module's format 400
	limit     comparison // A the same POST through plain reverse_proxy, B the module's 429
	kib, sse  comparison // A plain reverse_proxy, B app_password + reverse_proxy
}

// target is one judged line.
type target struct {
	what, measured string
	met            bool
	reportOnly     bool // a figure to show, not to judge
}

func (t target) verdict() string {
	switch {
	case t.reportOnly:
		return "reported"
	case t.met:
		return "met"
	}
	return "not met"
}

// ratio is b/a, NaN when a is not a figure.
func ratio(b, a float64) float64 {
	if a <= 0 || math.IsNaN(a) || math.IsNaN(b) {
		return math.NaN()
	}
	return b / a
}

// targets judges f against each target.
func targets(f figures) []target {
	var ts []target
	p := f.provision
	rate := ratio(p.b.rps(), p.a.rps())
	placed := ""
	if !f.pinned {
		placed = "; cores shared, the target is for -pin"
	}
	ts = append(ts, target{
		what:     "POST rate ≥ 0.9 × raw put rate of the same record, Vault on a core of its own",
		measured: fmt.Sprintf("%.0f POST/s, %.0f raw put/s: %s%s", p.b.rps(), p.a.rps(), times(rate), placed),
		met:      rate >= 0.9,
	})
	vault := ratio(p.b.cpuPer(procVault), p.a.cpuPer(procVault))
	ts = append(ts, target{
		what:     "Vault CPU per module write within 5 % of the baseline's",
		measured: fmt.Sprintf("%s per POST, %s per raw put: %s", micros(p.b.cpuPer(procVault)), micros(p.a.cpuPer(procVault)), times(vault)),
		met:      math.Abs(vault-1) <= 0.05,
	})
	ts = append(ts, underCPU("Caddy CPU per POST ≤ 200 µs", p.b.cpuPer(procCaddy), 200, ""))
	for _, c := range []struct {
		what string
		c    comparison
	}{{"format 400", f.format}, {"429", f.limit}} {
		ts = append(ts, underCPU("Caddy CPU per rejected request ("+c.what+") ≤ 30 µs", c.c.b.cpuPer(procCaddy), 30,
			fmt.Sprintf(" (the same request through plain reverse_proxy: %s)", micros(c.c.a.cpuPer(procCaddy)))))
	}
	for _, c := range []comparison{f.kib, f.sse} {
		r := ratio(c.b.rps(), c.a.rps())
		ts = append(ts, target{
			what:     c.name + ": rate ≥ 0.98 × plain reverse_proxy",
			measured: fmt.Sprintf("%.0f/s, %.0f/s: %s", c.b.rps(), c.a.rps(), times(r)),
			met:      r >= 0.98,
		})
		q := ratio(float64(c.b.p99), float64(c.a.p99))
		ts = append(ts, target{
			what:     c.name + ": p99 within 5 % of plain reverse_proxy",
			measured: fmt.Sprintf("%s, %s: %s", millis(c.b.p99), millis(c.a.p99), times(q)),
			met:      q <= 1.05,
		})
	}
	ts = append(ts, target{
		what: fmt.Sprintf("p99 of a POST at %d workers, beside the raw put's", f.workers),
		measured: fmt.Sprintf("POST p50 %s, p99 %s; raw put p50 %s, p99 %s",
			millis(p.b.p50), millis(p.b.p99), millis(p.a.p50), millis(p.a.p99)),
		reportOnly: true,
	})
	return ts
}

// underCPU judges a CPU figure against a ceiling in µs.
func underCPU(what string, got, ceiling float64, more string) target {
	return target{what: what, measured: micros(got) + more, met: got > 0 && got <= ceiling}
}

// targetTable writes the targets as a Markdown table.
func targetTable(w io.Writer, ts []target) {
	fmt.Fprintln(w, "| target | measured | verdict |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, t := range ts {
		fmt.Fprintf(w, "| %s | %s | %s |\n", t.what, t.measured, t.verdict())
	}
}

// summaryTable is one row per comparison: the figures of issue 14's
// pinned-core table, with the placement they were measured in.
func summaryTable(w io.Writer, pl placement, cs []comparison) {
	fmt.Fprintln(w, "| scenario | placement | B correct answers/s | A correct answers/s | B/A | Vault CPU per answer B / A | Caddy CPU per answer B / A | p50 B / A | p99 B / A |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, c := range cs {
		fmt.Fprintf(w, "| %s | %s | %.0f | %.0f | %s | %s / %s | %s / %s | %s / %s | %s / %s |\n",
			c.name, pl.short(), c.b.rps(), c.a.rps(), times(ratio(c.b.rps(), c.a.rps())),
			micros(c.b.cpuPer(procVault)), micros(c.a.cpuPer(procVault)),
			micros(c.b.cpuPer(procCaddy)), micros(c.a.cpuPer(procCaddy)),
			millis(c.b.p50), millis(c.a.p50), millis(c.b.p99), millis(c.a.p99))
	}
}

func times(r float64) string {
	if math.IsNaN(r) {
		return "no figure"
	}
	return fmt.Sprintf("%.3f×", r)
}

func micros(us float64) string {
	if us >= 100 {
		return fmt.Sprintf("%.0f µs", us)
	}
	return fmt.Sprintf("%.1f µs", us)
}

func millis(d time.Duration) string { return fmt.Sprintf("%.2f ms", ms(d)) }
