package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// run is one side of one scenario, as the report names it.
type run struct {
	scenario, side string
	r              result
}

// runs are all that the harness measured, kept for the table of answers
// and the verdict.
type runs []run

func (rs *runs) add(scenario, side string, r result) {
	*rs = append(*rs, run{scenario: scenario, side: side, r: r})
}

// verdict is nil when every run got at least one answer and every answer
// was correct. A run with wrong answers measured something other than what
// its row says (an error page is fast), so the harness fails on any: in a
// smoke run as in a full one.
func (rs runs) verdict() error {
	var errs []error
	for _, x := range rs {
		switch {
		case x.r.failures > 0:
			errs = append(errs, fmt.Errorf("%s, %s: %d of %d answers wrong; the first: %v",
				x.scenario, x.side, x.r.failures, x.r.failures+x.r.correct, x.r.firstErr))
		case x.r.correct == 0:
			why := "no request was sent"
			if x.r.cut > 0 {
				why = fmt.Sprintf("%d requests cut off unanswered by the run's end; the last: %v", x.r.cut, x.r.cutErr)
			}
			errs = append(errs, fmt.Errorf("%s, %s: no correct answer (%s)", x.scenario, x.side, why))
		}
	}
	return errors.Join(errs...)
}

// conclude ends a run after its report: it exits non-zero (fail) on any
// wrong answer, then on any other problem, and returns when there is
// neither. A function of its own so that a test can run the exit path.
func conclude(measured runs, problems []error) {
	if err := measured.verdict(); err != nil {
		fail("FAILED: wrong answers; the figures above leave them out, but they do not measure what they say:\n" + err.Error())
	}
	if err := errors.Join(problems...); err != nil {
		fail("FAILED: " + err.Error())
	}
}

// table writes the answers of every run: correct, wrong, cut off.
func (rs runs) table(w io.Writer) {
	fmt.Fprintln(w, "| scenario | side | correct answers | wrong answers | cut off by the run's end | first wrong answer |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, x := range rs {
		first := "–"
		if x.r.firstErr != nil {
			first = strings.NewReplacer("|", `\|`, "\n", " ").Replace(x.r.firstErr.Error())
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %s |\n", x.scenario, x.side, x.r.correct, x.r.failures, x.r.cut, first)
	}
}
