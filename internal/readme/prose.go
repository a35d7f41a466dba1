package readme

import (
	"cmp"
	"regexp"
	"slices"
	"strings"
)

// FlagUse is a command or one of its flags as README.md's prose (an inline
// code span) or a ```sh block spells it: `caddy app-password check`,
// `--json` said of the list command, `--key-env NAME` of the importer. A
// test checks each against the command's real flags, so that a spelling
// the commands do not accept cannot stay in the README.
type FlagUse struct {
	// Command is "app-password check", "app-password list",
	// "app-password sweep" or "import-mcp-db": the span's own, or, for a
	// span that is a flag alone, the command the README named last.
	Command string
	Flag    string // "--json"; "" for the command itself
	Value   string // the flag's value as spelled ("NAME", "caddyfile"), if any
	Line    int    // where the paragraph or block starts, from 1
}

var (
	codeSpan    = regexp.MustCompile("`([^`]+)`")
	commandName = regexp.MustCompile(`^(?:\./)?(?:caddy\s+)?(app-password\s+(?:check|list|sweep)|import-mcp-db)(?:\s|$)`)
	flagWord    = regexp.MustCompile(`^--[a-z][a-z-]*$`)
	listItem    = regexp.MustCompile(`^(?:[-*+]|\d+[.)])\s`)
)

// ProseFlags finds the commands and flags of markdown's prose and sh
// blocks, in order. A paragraph (or list item) is read whole, so a code
// span may wrap. A span that is a flag alone is said of the command the
// same paragraph named last, else of the last command the README ran or
// spelled with flags (a ```sh line, a span such as `caddy app-password
// sweep --dry-run`); another command on a ```sh line, and a heading, end
// that.
func ProseFlags(markdown string) []FlagUse {
	var (
		uses           []FlagUse
		usage, paraCmd string
		para           []string
		start          int
		fence, lang    string
	)
	read := func(s string, line int, inBlock bool) {
		words := strings.Fields(s)
		if len(words) == 0 {
			return
		}
		if m := commandName.FindStringSubmatch(s); m != nil {
			cmd := strings.Join(strings.Fields(m[1]), " ")
			uses = append(uses, FlagUse{Command: cmd, Line: line})
			rest := strings.Fields(strings.TrimPrefix(strings.TrimSpace(s), m[0]))
			paraCmd = cmd
			if inBlock || slices.ContainsFunc(rest, flagWord.MatchString) {
				usage = cmd
			}
			uses = append(uses, flagsOf(cmd, rest, line)...)
			return
		}
		if inBlock {
			if !strings.HasPrefix(words[0], "#") {
				usage = "" // another command
			}
			return
		}
		if !flagWord.MatchString(words[0]) {
			return
		}
		if cmd := cmp.Or(paraCmd, usage); cmd != "" {
			uses = append(uses, flagsOf(cmd, words, line)...)
		}
	}
	flush := func() {
		for _, m := range codeSpan.FindAllStringSubmatch(strings.Join(para, " "), -1) {
			read(m[1], start, false)
		}
		para, paraCmd = nil, ""
	}
	for i, line := range strings.Split(markdown, "\n") {
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
				fence = ""
			} else if lang == "sh" {
				read(trimmed, i+1, true)
			}
			continue
		}
		if f := fenceOf(trimmed); f != "" {
			flush()
			fence, lang = f, firstWord(strings.TrimPrefix(trimmed, f))
			continue
		}
		switch {
		case trimmed == "":
			flush()
			continue
		case strings.HasPrefix(trimmed, "#"):
			flush()
			usage = ""
			continue
		case listItem.MatchString(trimmed):
			flush()
		}
		if len(para) == 0 {
			start = i + 1
		}
		para = append(para, trimmed)
	}
	flush()
	return uses
}

// flagsOf are the flags among words, each with the word after it as its
// value unless that is a flag too.
func flagsOf(cmd string, words []string, line int) []FlagUse {
	var out []FlagUse
	for i, w := range words {
		if !flagWord.MatchString(w) {
			continue
		}
		u := FlagUse{Command: cmd, Flag: w, Line: line}
		if i+1 < len(words) && !strings.HasPrefix(words[i+1], "-") {
			u.Value = words[i+1]
		}
		out = append(out, u)
	}
	return out
}
