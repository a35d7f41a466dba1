package caddyapppw

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// moduleLogger names the module's loggers; the audit logger is a child.
const moduleLogger = "http.handlers.app_password"

// assertNoSecrets fails if file holds any of the passwords in a form a
// careless line could carry (see secretForms) or an Authorization header.
// A search of a log that the module never wrote to proves nothing, so it
// first requires the module's own request lines (the "app password
// request" lines, or the audit lines in an audit log) and returns how
// many it read, for callers to compare with the requests they sent.
func assertNoSecrets(t testing.TB, file string, passwords ...string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reading the log: %v", err)
	}
	n := moduleRequestLines(data)
	if n == 0 {
		t.Fatalf("%s holds none of the module's request lines: the search would prove nothing", file)
	}
	text := string(data)
	for _, pw := range passwords {
		for _, f := range secretForms(pw) {
			if strings.Contains(text, f.text) {
				t.Errorf("the log holds a password (%s)", f.form)
			}
		}
	}
	if basicAuthValue.MatchString(text) {
		t.Errorf("the log holds an Authorization header")
	}
	return n
}

var basicAuthValue = regexp.MustCompile(`Basic [A-Za-z0-9+/]{8,}`)

// moduleRequestLines counts the module's lines that report a request:
// those of its logger that name a route and a status, one per API request;
// in a file that holds none of them (an audit log), the audit logger's,
// one per write.
func moduleRequestLines(data []byte) int {
	requests, audit := 0, 0
	for _, line := range bytes.Split(data, []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		_, hasRoute := m["route"].(string)
		_, hasStatus := m["status"].(float64)
		switch {
		case !hasRoute || !hasStatus:
		case m["logger"] == moduleLogger:
			requests++
		case m["logger"] == moduleLogger+".audit":
			audit++
		}
	}
	if requests > 0 {
		return requests
	}
	return audit
}

// secretForm is one way a password can appear in text.
type secretForm struct{ form, text string }

// secretForms lists the forms of pw to search for: clear, URL-encoded
// (query and path escaping), and base64 (standard and URL alphabets) at
// each of the three offsets modulo 3. A password base64-encoded after any
// prefix — "alice:" + pw in a BasicAuth value, or any other user name —
// contains one of the three offset forms: the groups of three bytes that
// lie wholly inside pw encode the same whatever comes before or after.
func secretForms(pw string) []secretForm {
	forms := []secretForm{{"clear", pw}}
	if q := url.QueryEscape(pw); q != pw {
		forms = append(forms, secretForm{"query-escaped", q})
	}
	if p := url.PathEscape(pw); p != pw {
		forms = append(forms, secretForm{"path-escaped", p})
	}
	for _, enc := range []struct {
		name string
		enc  *base64.Encoding
	}{{"base64", base64.RawStdEncoding}, {"base64url", base64.RawURLEncoding}} {
		for shift := range 3 {
			in := strings.Repeat("\x00", shift) + pw
			whole := len(in) / 3 // complete groups; the last partial one depends on what follows
			first := 0
			if shift > 0 {
				first = 1 // the first group mixes in what comes before
			}
			if whole-first < 2 {
				continue // too short to search for without false alarms
			}
			core := enc.enc.EncodeToString([]byte(in))[4*first : 4*whole]
			forms = append(forms, secretForm{enc.name, core})
		}
	}
	return forms
}

// recordingTB catches an assertion's failures instead of failing the test.
type recordingTB struct {
	testing.TB
	failures []string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

// failuresOf runs check with a recording TB and returns what it reported.
func failuresOf(t *testing.T, check func(tb testing.TB)) []string {
	rec := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(rec)
	}()
	<-done
	return rec.failures
}

func TestAssertNoSecretsProvesSomething(t *testing.T) {
	const pw = "Abcde-Fghij-Klmno-Pqrst-Uvwxy"
	const odd = "p@ss/word+with spaces&more=1" // a password with characters URL encoding changes
	moduleLine := `{"level":"info","logger":"http.handlers.app_password","msg":"app password request","route":"app-password","method":"POST","user_id":"alice","outcome":"ok","status":200,"client_ip":"127.0.0.1"}`
	auditLine := `{"level":"info","logger":"http.handlers.app_password.audit","msg":"provisioning","route":"app-password","method":"POST","user_id":"alice","outcome":"ok","status":200}`
	caddyLines := `{"level":"info","logger":"http","msg":"server running","name":"srv0","protocols":["h1","h2","h3"]}
{"level":"info","logger":"http.handlers.app_password","msg":"vault login","method":"token"}`
	write := func(text string) string {
		f := t.TempDir() + "/log"
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	for name, c := range map[string]struct {
		log  string
		want string // the failure expected; "" for none
	}{
		"only Caddy's lines":         {caddyLines, "holds none of the module's request lines"},
		"empty":                      {"", "holds none of the module's request lines"},
		"clean":                      {caddyLines + "\n" + moduleLine + "\n" + auditLine + "\n" + moduleLine, ""},
		"audit log":                  {auditLine + "\n" + auditLine, ""},
		"clear":                      {moduleLine + "\n" + `{"cause":"bad ` + pw + `"}`, "holds a password (clear)"},
		"any user's BasicAuth value": {moduleLine + "\n" + `{"cause":"` + b64("mallory:"+pw) + `"}`, "holds a password (base64)"},
		"other offset":               {moduleLine + "\n" + `{"cause":"` + b64("bo:"+pw) + `"}`, "holds a password (base64)"},
		"base64 alone":               {moduleLine + "\n" + `{"cause":"` + b64(pw) + `"}`, "holds a password (base64)"},
		"query-escaped":              {moduleLine + "\n" + `{"uri":"/x?p=` + url.QueryEscape(odd) + `"}`, "holds a password (query-escaped)"},
		"path-escaped":               {moduleLine + "\n" + `{"uri":"/x/` + url.PathEscape(odd) + `"}`, "holds a password (path-escaped)"},
		"header":                     {moduleLine + "\n" + `{"authorization":"Basic QWxhZGRpbjpvcGVu"}`, "holds an Authorization header"},
	} {
		var n int
		got := failuresOf(t, func(tb testing.TB) { n = assertNoSecrets(tb, write(c.log), pw, odd) })
		switch {
		case c.want == "" && len(got) > 0:
			t.Errorf("%s: failed with %q", name, got)
		case c.want == "" && n != 2:
			t.Errorf("%s: counted %d module lines, want 2", name, n)
		case c.want != "" && (len(got) == 0 || !strings.Contains(got[0], c.want)):
			t.Errorf("%s: reported %q, want %q", name, got, c.want)
		}
	}
}
