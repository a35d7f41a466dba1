package mcpserver

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxText bounds Outcome.Text, in runes: a log line, not a document.
const maxText = 200

// clean makes a text from an answer or an error fit for a log line: the
// secrets replaced, invalid UTF-8 replaced, control and format characters
// (line breaks, escapes, bidi overrides) and runs of space turned into one
// space, at most maxText runes.
func clean(s string, secrets []string) string {
	s = tidy(redact(s, secrets))
	// Again, as tidied: a secret with a run of spaces in it now has one.
	for _, secret := range secrets {
		if t := tidy(secret); t != "" {
			s = strings.ReplaceAll(s, t, "[redacted]")
		}
	}
	if utf8.RuneCountInString(s) > maxText {
		s = string([]rune(s)[:maxText]) + "…"
	}
	return s
}

// tidy drops invalid UTF-8 and turns control and format characters and
// runs of space into one space.
func tidy(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r)
	}), " ")
}

func redact(s string, secrets []string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}
