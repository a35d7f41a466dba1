package fakenextcloud

import (
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	pw1 = "Abcde-Fghij-Klmno-Pqrst-Uvwxy"
	pw2 = "Zyxwv-Utsrq-Ponml-Kjihg-Fedcb"
	pw3 = "Qwert-Yuiop-Asdfg-Hjklz-Xcvbn"
)

type reply struct {
	status int
	header http.Header
	body   string
}

func (s *Server) get(t *testing.T, version, login, password, xff string) reply {
	t.Helper()
	path := "/ocs/v2.php/cloud/user?format=json"
	if version == "v1" {
		path = "/ocs/v1.php/cloud/user?format=json"
	}
	req, _ := http.NewRequest("GET", s.URL+path, nil)
	if login != "" || password != "" {
		req.SetBasicAuth(login, password)
	}
	req.Header.Set("OCS-APIRequest", "true")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

// uid is the uid of a successful answer, or "" after checking a failure.
func (r reply) uid(t *testing.T) string {
	t.Helper()
	if r.status != 200 {
		return ""
	}
	i := strings.Index(r.body, `"id":"`)
	if i < 0 {
		t.Fatalf("200 without id: %s", r.body)
	}
	rest := r.body[i+6:]
	return rest[:strings.IndexByte(rest, '"')]
}

const (
	v2Unauthorised = `{"ocs":{"data":[],"meta":{"message":"Unauthorised","status":"failure","statuscode":997}}}` + "\n"
	v2MaxDelay     = `{"ocs":{"data":[],"meta":{"message":"Reached maximum delay","status":"failure","statuscode":429}}}` + "\n"
)

func TestWrongPasswordAnswers(t *testing.T) {
	s := New(t)
	s.AddUser("alice", "", pw1)
	r := s.get(t, "v2", "alice", pw2, "")
	if r.status != 401 || r.body != v2Unauthorised ||
		r.header.Get("WWW-Authenticate") != `Basic realm="Authorisation Required"` ||
		r.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("v2: %d %v %s", r.status, r.header, r.body)
	}
	r = s.get(t, "v1", "alice", pw2, "")
	if r.status != 200 || r.body != `{"ocs":{"data":[],"meta":{"itemsperpage":"","message":"Unauthorised","status":"failure","statuscode":997,"totalitems":""}}}`+"\n" {
		t.Fatalf("v1: %d %s", r.status, r.body)
	}
	// No credentials: not a login at all, so no challenge and no failure.
	r = s.get(t, "v2", "", "", "")
	if r.status != 401 || r.header.Get("WWW-Authenticate") != "" ||
		r.body != `{"ocs":{"data":[],"meta":{"message":"Current user is not logged in","status":"failure","statuscode":997}}}`+"\n" {
		t.Fatalf("anonymous: %d %v %s", r.status, r.header, r.body)
	}
	if n := s.FailedLogins("127.0.0.1"); n != 2 {
		t.Fatalf("%d failed logins registered, want 2", n)
	}
	if r := s.get(t, "v2", "alice", pw1, ""); r.uid(t) != "alice" || !strings.Contains(r.body, `"meta":{"message":"OK","status":"ok","statuscode":200}`) {
		t.Fatalf("success: %d %s", r.status, r.body)
	}
}

// An app password works only with the login name it was created under,
// in any case; the account's own password works under every name.
func TestAppPasswordBoundToItsLoginName(t *testing.T) {
	s := New(t)
	s.AddUser("alice", "alice@example.com", pw1) // created after signing in by e-mail
	s.AddAppPassword("alice", "Alice", pw2)      // created after signing in as "Alice"
	s.AddUser("bob", "", pw1)                    // the same string, bob's, created as "bob"
	cases := []struct {
		login, password, uid string
	}{
		{"alice@example.com", pw1, "alice"},
		{"ALICE@Example.com", pw1, "alice"},
		{"alice", pw1, ""},
		{"bob", pw1, "bob"},
		{"alice", pw2, "alice"},
		{"ALICE", pw2, "alice"},
		{"alice@example.com", pw2, ""},
		{"alice", pw3, ""},
	}
	for _, c := range cases {
		if got := s.get(t, "v2", c.login, c.password, "").uid(t); got != c.uid {
			t.Errorf("%s with %s...: uid %q, want %q", c.login, c.password[:5], got, c.uid)
		}
	}
	s.Revoke("alice", pw2)
	if got := s.get(t, "v2", "alice", pw2, "").uid(t); got != "" {
		t.Errorf("revoked password accepted as %q", got)
	}

	s.SetLoginPassword("alice", pw3)
	for _, login := range []string{"alice", "ALICE", "alice@example.com", "Alice@Example.COM"} {
		if got := s.get(t, "v2", login, pw3, "").uid(t); got != "alice" {
			t.Errorf("login password as %s: uid %q", login, got)
		}
	}
	if got := s.get(t, "v2", "bob", pw3, "").uid(t); got != "" {
		t.Errorf("alice's login password opened %q", got)
	}
}

// TestLoginNamesCompareAsMbStrtolower: Nextcloud compares login names
// with mb_strtolower, full Unicode lower-casing, which since PHP 8.3
// lowers a final capital sigma to "ς"; strings.ToLower gives "σ" there.
func TestLoginNamesCompareAsMbStrtolower(t *testing.T) {
	s := New(t)
	s.AddUser("anne", "Änne@example.com", pw1)
	s.AddUser("odos", "ΟΔΟΣ", pw2)
	s.AddUser("ilse", "İlse", pw3)
	for _, c := range []struct{ login, password, uid string }{
		{"änne@example.com", pw1, "anne"},
		{"ÄNNE@EXAMPLE.COM", pw1, "anne"},
		{"οδος", pw2, "odos"},
		{"Οδος", pw2, "odos"},
		{"οδοσ", pw2, ""}, // a final "σ" is another name to PHP 8.3
		{"i\u0307lse", pw3, "ilse"},
		{"ilse", pw3, ""}, // "İ" lowers to "i" and a combining dot
	} {
		if got := s.get(t, "v2", c.login, c.password, "").uid(t); got != c.uid {
			t.Errorf("%s: uid %q, want %q", c.login, got, c.uid)
		}
	}
}

// The throttle follows Nextcloud's Throttler: 0.1 s × 2^failures, 25 s at
// most, and 429 once the address failed more than 10 times in 30 minutes.
func TestThrottleDelaysThenRefuses(t *testing.T) {
	s := New(t)
	s.AddUser("alice", "", pw1)
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	s.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })

	for i := range 11 {
		if r := s.get(t, "v2", "alice", pw2, ""); r.status != 401 {
			t.Fatalf("failure %d: %d %s", i+1, r.status, r.body)
		}
	}
	r := s.get(t, "v2", "alice", pw1, "") // the right password, from that address
	if r.status != 429 || r.body != v2MaxDelay || r.header.Get("WWW-Authenticate") != "" {
		t.Fatalf("12th request: %d %v %s", r.status, r.header, r.body)
	}
	var delays []time.Duration
	for _, th := range s.Throttlings() {
		if th.Addr != "127.0.0.1" {
			t.Fatalf("throttled %q", th.Addr)
		}
		delays = append(delays, th.Delay)
	}
	ms := time.Millisecond
	want := []time.Duration{200 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 12800 * ms, 25 * time.Second, 25 * time.Second, 25 * time.Second, 0}
	if !reflect.DeepEqual(delays, want) {
		t.Fatalf("delays %v\nwant   %v", delays, want)
	}
	if th := s.Throttlings(); !th[10].Failed || th[11].Failed || !th[11].Refused {
		t.Fatalf("last two: %+v", th[10:])
	}
	if s.Throttled("127.0.0.1") != 12 || s.FailedLogins("127.0.0.1") != 11 {
		t.Fatalf("throttled %d, failed %d", s.Throttled("127.0.0.1"), s.FailedLogins("127.0.0.1"))
	}

	// Past 30 minutes the 429 lifts, the 25 s stay for 12 hours.
	mu.Lock()
	now = now.Add(31 * time.Minute)
	mu.Unlock()
	if r := s.get(t, "v2", "alice", pw1, ""); r.uid(t) != "alice" {
		t.Fatalf("after 31 min: %d %s", r.status, r.body)
	}
	if th := s.Throttlings(); th[len(th)-1].Delay != 25*time.Second {
		t.Fatalf("after 31 min: %+v", th[len(th)-1])
	}
	mu.Lock()
	now = now.Add(12 * time.Hour)
	mu.Unlock()
	s.get(t, "v2", "alice", pw1, "")
	if th := s.Throttlings(); th[len(th)-1].Delay != 0 {
		t.Fatalf("after 12 h: %+v", th[len(th)-1])
	}
}

// Behind a trusted proxy Nextcloud throttles the client named in
// X-Forwarded-For; from anyone else the header means nothing.
func TestThrottleAddress(t *testing.T) {
	s := New(t)
	s.AddUser("alice", "", pw1)
	addr := func(xff string) string {
		t.Helper()
		s.get(t, "v2", "alice", pw1, xff)
		th := s.Throttlings()
		return th[len(th)-1].Addr
	}
	if a := addr("203.0.113.9"); a != "127.0.0.1" {
		t.Fatalf("untrusted proxy: throttled %q", a)
	}
	s.SetTrustedProxies("127.0.0.0/8", "192.0.2.1")
	for xff, want := range map[string]string{
		"":                             "127.0.0.1",
		"203.0.113.9":                  "203.0.113.9",
		"198.51.100.1, 203.0.113.9":    "203.0.113.9", // the last hop's view counts
		"203.0.113.9, 192.0.2.1":       "203.0.113.9", // trusted hops are skipped
		"203.0.113.9:4711":             "203.0.113.9",
		"[2001:db8::7]:443":            "2001:db8::7",
		"2001:db8::8":                  "2001:db8::8",
		"not-an-address":               "127.0.0.1",
		"203.0.113.9, not-an-address,": "203.0.113.9",
	} {
		if a := addr(xff); a != want {
			t.Errorf("X-Forwarded-For %q: throttled %q, want %q", xff, a, want)
		}
	}
	if got := s.ForwardedFor(); len(got) != 10 || got[0] != "203.0.113.9" {
		t.Fatalf("ForwardedFor %q", got)
	}
}

// Failures count per subnet: one IPv4 address, an IPv6 /56. Other
// addresses, allow-listed ones and a disabled protection are not delayed.
func TestThrottleScope(t *testing.T) {
	s := New(t)
	s.AddUser("alice", "", pw1)
	s.SetTrustedProxies("127.0.0.1")
	last := func() Throttling { th := s.Throttlings(); return th[len(th)-1] }

	s.get(t, "v2", "alice", pw2, "2001:db8:0:1::1")
	s.get(t, "v2", "alice", pw1, "2001:db8:0:2::5")
	if d := last().Delay; d != 200*time.Millisecond {
		t.Fatalf("same /56: delay %v", d)
	}
	s.get(t, "v2", "alice", pw1, "2001:db8:0:100::5")
	if d := last().Delay; d != 0 {
		t.Fatalf("other /56: delay %v", d)
	}
	s.get(t, "v2", "alice", pw1, "203.0.113.10")
	if d := last().Delay; d != 0 {
		t.Fatalf("other address: delay %v", d)
	}

	s.BypassBruteForce("198.51.100.0/24")
	for range 12 {
		s.get(t, "v2", "alice", pw2, "198.51.100.3")
	}
	if r := s.get(t, "v2", "alice", pw1, "198.51.100.3"); r.uid(t) != "alice" || last().Delay != 0 || s.FailedLogins("198.51.100.3") != 0 {
		t.Fatalf("allow-listed: %d, %+v", r.status, last())
	}

	s.DisableBruteForceProtection()
	for range 12 {
		s.get(t, "v2", "alice", pw2, "203.0.113.11")
	}
	if r := s.get(t, "v2", "alice", pw1, "203.0.113.11"); r.uid(t) != "alice" || last().Delay != 0 {
		t.Fatalf("protection off: %d, %+v", r.status, last())
	}
}

// With SleepDelays a throttled request really waits, and gives up with
// its client.
func TestThrottleSleeps(t *testing.T) {
	s := New(t)
	s.AddUser("alice", "", pw1)
	s.get(t, "v2", "alice", pw2, "") // 200 ms registered, not slept
	s.SleepDelays(1)
	req, _ := http.NewRequest("GET", s.URL+"/ocs/v2.php/cloud/user", nil)
	req.SetBasicAuth("alice", pw1)
	req.Header.Set("OCS-APIRequest", "true")
	start := time.Now()
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d := time.Since(start); resp.StatusCode != 200 || d < 200*time.Millisecond {
		t.Fatalf("answered %d after %v, want 200 after at least 200ms", resp.StatusCode, d)
	}
}
