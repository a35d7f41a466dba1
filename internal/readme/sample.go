package readme

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// A sample output in README.md shows one run of a command: its user ids,
// times, counts and addresses are that run's, the rest of each line is
// what the command always prints. Shapes turns each line of a sample into
// a pattern that keeps the rest exact and lets the variable parts vary, so
// that a test compares the command's real output with the sample.
//
// The variable parts are found by kind: an http(s) address (scheme, host
// and port), an RFC 3339 time, an age ("58d3h", "3h5m", "45s"), a whole number, and the
// names given (the sample's user ids, login names and scopes). Runs of spaces (a table's alignment) match any run.
var (
	urlPart    = `https?://[A-Za-z0-9.\-\[\]]+(?::\d+)?`
	timePart   = `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`
	agePart    = `\d+[dhms](?:\d+[hms])?`
	numberPart = `\d+`
)

// Shapes returns one pattern per non-empty line of sample; names are the
// words that vary from run to run besides those found by kind.
func Shapes(sample string, names ...string) []*regexp.Regexp {
	alts := []string{urlPart, timePart, agePart}
	// Longest first: "alice@example.com" before "alice".
	names = slices.Clone(names)
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })
	for _, n := range names {
		alts = append(alts, regexp.QuoteMeta(n))
	}
	alts = append(alts, `\b`+numberPart+`\b`, `\s+`)
	variable := regexp.MustCompile(strings.Join(alts, "|"))
	var out []*regexp.Regexp
	for _, line := range strings.Split(sample, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var b strings.Builder
		b.WriteString("^")
		last := 0
		for _, m := range variable.FindAllStringIndex(line, -1) {
			b.WriteString(regexp.QuoteMeta(line[last:m[0]]))
			b.WriteString(partPattern(line[m[0]:m[1]]))
			last = m[1]
		}
		b.WriteString(regexp.QuoteMeta(line[last:]) + "$")
		out = append(out, regexp.MustCompile(b.String()))
	}
	return out
}

// partPattern is what a variable part of a sample line may be in a real
// one: of the same kind; a name is any word.
func partPattern(part string) string {
	for _, kind := range []string{urlPart, timePart, agePart, numberPart} {
		if regexp.MustCompile(`^(?:` + kind + `)$`).MatchString(part) {
			return kind
		}
	}
	if strings.TrimSpace(part) == "" {
		return `\s+`
	}
	return `\S+`
}

// MatchShapes checks out, a command's real output, against the shapes of
// its sample: every line of out must have the shape of a sample line (the
// command prints nothing the README does not show), and, when complete is
// set (the run met every case the sample shows), every sample line must
// have a line of out (the README shows nothing the command no longer
// prints).
func MatchShapes(shapes []*regexp.Regexp, out string, complete bool) error {
	var errs []string
	used := make([]bool, len(shapes))
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		found := false
		for i, s := range shapes {
			if s.MatchString(line) {
				found, used[i] = true, true
			}
		}
		if !found {
			errs = append(errs, fmt.Sprintf("the output's line %q has the shape of no line of the sample", line))
		}
	}
	if complete {
		for i, s := range shapes {
			if !used[i] {
				errs = append(errs, fmt.Sprintf("no line of the output has the shape of the sample's %s", s))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}
