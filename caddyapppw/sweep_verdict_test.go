package caddyapppw

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/nextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
)

// Only Nextcloud's own refusal of the credentials deletes: every other
// answer, a 401 or 403 that is not Nextcloud's among them, keeps the
// record; a 429 ends the round. The checks carry no X-Forwarded-For.
func TestSweepVerdicts(t *testing.T) {
	nc := fakenextcloud.New(t)
	nc.DisableBruteForceProtection()
	nc.AddUser("alice", "alice@example.com", alicePW)
	client := nextcloudClient(t, nc.URL)
	checker := sweepChecker{client}

	for _, c := range []struct {
		name     string
		fault    fakenextcloud.Fault
		login    string
		password string
		want     sweep.Verdict
		reason   string
	}{
		{"valid", fakenextcloud.Fault{}, "alice@example.com", alicePW, sweep.Valid, ""},
		{"revoked: 401 with OCS 997", fakenextcloud.Fault{}, "alice@example.com", alicePW2, sweep.Rejected, ""},
		{"user gone: 401 with OCS 997", fakenextcloud.Fault{}, "nobody", alicePW, sweep.Rejected, ""},
		{"OCS 997 in a 200", fakenextcloud.Fault{V1Answers: true}, "alice@example.com", alicePW2, sweep.Rejected, ""},
		{"a proxy's 401", fakenextcloud.Fault{BareStatus: 401}, "alice@example.com", alicePW, sweep.Unavailable,
			"nextcloud answered HTTP 401 without its OCS refusal (OCS status 0)"},
		{"403 with an OCS body", fakenextcloud.Fault{Status: 403}, "alice@example.com", alicePW, sweep.Unavailable,
			"nextcloud answered HTTP 403 without its OCS refusal (OCS status 403)"},
		{"throttled", fakenextcloud.Fault{Status: 429}, "alice@example.com", alicePW, sweep.Throttled, "nextcloud answered HTTP 429"},
		{"5xx", fakenextcloud.Fault{Status: 500}, "alice@example.com", alicePW, sweep.Unavailable, "nextcloud answered HTTP 500"},
		{"maintenance", fakenextcloud.Fault{Maintenance: true}, "alice@example.com", alicePW, sweep.Unavailable, "nextcloud answered HTTP 503"},
		{"redirect", fakenextcloud.Fault{RedirectTo: "http://127.0.0.1:1/"}, "alice@example.com", alicePW, sweep.Unavailable, "nextcloud answered HTTP 302"},
		{"HTML", fakenextcloud.Fault{HTML: true}, "alice@example.com", alicePW, sweep.Unavailable, "nextcloud answer is not OCS JSON: "},
		{"another account", fakenextcloud.Fault{WrongID: "mallory"}, "alice@example.com", alicePW, sweep.Unavailable,
			"the password opens another account (mallory)"},
	} {
		nc.SetFault(c.fault)
		v, err := checker.Check(t.Context(), c.login, c.password, "alice")
		if v != c.want {
			t.Errorf("%s: verdict %s (%v), want %s", c.name, v, err, c.want)
		}
		switch {
		case c.reason == "" && err != nil:
			t.Errorf("%s: error %v", c.name, err)
		case c.reason != "" && (err == nil || !strings.HasPrefix(err.Error(), c.reason)):
			t.Errorf("%s: error %v, want %q", c.name, err, c.reason)
		}
	}
	for i, ff := range nc.ForwardedFor() {
		if ff != "" {
			t.Errorf("check %d carried X-Forwarded-For %q", i, ff)
		}
	}
}

// nextcloudClient is the module's Nextcloud client for url, with the
// defaults, closed when the test ends.
func nextcloudClient(t *testing.T, url string) *nextcloud.Client {
	t.Helper()
	cfg := &nextcloud.Config{URL: url}
	cfg.SetDefaults()
	client, err := nextcloud.New(cfg, caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}
