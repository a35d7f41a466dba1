package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// concludeChild is set in the environment of the test binary that
// TestRunExitsNonZeroOnAWrongAnswer starts: that process runs conclude,
// which must exit.
const concludeChild = "BENCH_CONCLUDE_CHILD"

// The benchmark exits non-zero on any wrong answer, and on any other
// problem: conclude runs in a child process (it ends the process), on a
// run with one wrong answer and no other problem, on a run with a problem
// only, and on a clean run. Failing first: with the verdict ignored in
// conclude (the run's end in main), the run with a wrong answer exits 0.
func TestRunExitsNonZeroOnAWrongAnswer(t *testing.T) {
	if os.Getenv(concludeChild) != "" {
		childConclude(os.Getenv(concludeChild))
		return
	}
	for _, c := range []struct {
		name, want string
		code       int
	}{
		{"wrong", "bench: FAILED: wrong answers; the figures above leave them out, but they do not measure what they say:\n" +
			"POST, B (the module): 1 of 3 answers wrong; the first: status 502, want 200", 1},
		{"problem", "bench: FAILED: go test -bench: exit status 1", 1},
		{"clean", "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRunExitsNonZeroOnAWrongAnswer$")
			cmd.Env = append(os.Environ(), concludeChild+"="+c.name)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != c.code || !strings.Contains(stderr.String(), c.want) {
				t.Fatalf("a %s run: exit %d, stderr:\n%s\nwant exit %d and %q", c.name, code, stderr.String(), c.code, c.want)
			}
		})
	}
}

// childConclude is the child's part: conclude on the run named.
func childConclude(name string) {
	var measured runs
	var problems []error
	switch name {
	case "wrong":
		measured.add("POST", "B (the module)", result{correct: 2, failures: 1, firstErr: errors.New("status 502, want 200")})
	case "problem":
		measured.add("POST", "B (the module)", result{correct: 3})
		problems = append(problems, errors.New("go test -bench: exit status 1"))
	case "clean":
		measured.add("POST", "B (the module)", result{correct: 3})
	}
	conclude(measured, problems)
}
