package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/caddyproc"
	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
)

// What deploy/ ships for monitoring: the alerting rules (with their unit
// tests) and the Grafana dashboard.
const (
	rulesFile     = "../deploy/prometheus/caddy-apppw.rules.yml"
	rulesTestFile = "../deploy/prometheus/caddy-apppw.rules.test.yml"
	dashboardFile = "../deploy/grafana/caddy-apppw.json"
)

// metricName matches the names of Caddy's and the module's series in a
// query: caddy_… up to the first character that cannot be in a name.
var metricName = regexp.MustCompile(`\bcaddy_[a-zA-Z0-9_]+`)

// namesIn returns the distinct metric names a text's queries use.
func namesIn(text string) []string {
	names := metricName.FindAllString(text, -1)
	slices.Sort(names)
	return slices.Compact(names)
}

// TestDeployMetricsExported scrapes a running Caddy (the binary built from
// xcaddy.json) after traffic that touches every path the module counts —
// stored, refused, rate-limited, delivered, a delivery to an MCP server
// that is down and the re-delivery round it starts, Nextcloud unreachable,
// Vault refusing, Redis down, a sweep round — and checks that every series
// the alerting rules and the dashboard query is exported, and that the
// re-delivery round was counted.
func TestDeployMetricsExported(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy and runs the dev Vault: the full suite runs it")
	}
	var wanted []string
	for _, f := range []string{rulesFile, dashboardFile} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		names := namesIn(string(data))
		if len(names) == 0 {
			t.Fatalf("%s names no metric", f)
		}
		wanted = append(wanted, names...)
	}
	slices.Sort(wanted)
	wanted = slices.Compact(wanted)

	bin := caddyBinary(t)
	vault := devvault.Start(t, devvault.Options{})
	nc := fakenextcloud.New(t)
	nc.AddUser("alice", "", appPassword)
	upstream, _ := passThroughBackend(t, nc.URL)
	siteA, siteB, siteC, siteD, siteE, admin := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	closed := freeAddr(t) // nothing listens: Redis, Nextcloud and an MCP server that are down
	caddyfile := fmt.Sprintf(`{
	admin %[1]s
}
# Stores, delivers, limits per address, on a Redis that is down.
http://%[2]s {
	app_password {
		nextcloud %[6]s
		vault %[7]s {
			token {env.VAULT_TOKEN}
		}
		rate_limit 5 1h {
			zone a
			redis redis://%[8]s {
				timeout 100ms
			}
			on_error local
			per_address 50 1h
		}
		sweep off
		# One round at start, then none while the test runs: only site E's
		# rounds set the pending gauge (one per process).
		deliver_to_mcp %[9]s {
			interval 1h
		}
	}
	reverse_proxy %[9]s
}
# Nextcloud unreachable.
http://%[3]s {
	app_password {
		nextcloud http://%[8]s
		vault %[7]s {
			token {env.VAULT_TOKEN}
		}
		rate_limit 5 1h {
			zone b
		}
		sweep off
	}
	reverse_proxy %[9]s
}
# Vault refuses the token.
http://%[4]s {
	app_password {
		nextcloud %[6]s
		vault %[7]s {
			token not-a-vault-token
		}
		rate_limit 5 1h {
			zone c
		}
		sweep off
	}
	reverse_proxy %[9]s
}
# Sweeps within seconds of starting (the first round comes within a tenth
# of the interval).
http://%[5]s {
	app_password {
		nextcloud %[6]s
		vault %[7]s {
			token {env.VAULT_TOKEN}
		}
		rate_limit 5 1h {
			zone d
		}
		sweep {
			interval 1m
		}
	}
	reverse_proxy %[9]s
}
# Delivers to an MCP server that is down: the client gets 502, Vault keeps
# the change marked, and the re-delivery rounds (under their own path
# prefix, so site A's rounds never see the record) try it again.
http://%[10]s {
	app_password {
		nextcloud %[6]s
		vault %[7]s {
			token {env.VAULT_TOKEN}
			path_prefix e2e-mcp-down
		}
		rate_limit 5 1h {
			zone e
		}
		sweep off
		deliver_to_mcp %[8]s {
			interval 1s
		}
	}
	reverse_proxy %[8]s
}
`, admin, siteA, siteB, siteC, siteD, nc.URL, vault.Addr, closed, upstream, siteE)
	file := filepath.Join(t.TempDir(), "Caddyfile")
	writeFile(t, file, caddyfile)
	proc, err := caddyproc.Start(bin, file, t.TempDir(), "VAULT_TOKEN="+vault.Token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proc.Stop)

	post := func(site, user, password string) int {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", "http://"+site+"/api/v1/users/"+user+"/app-password", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+password)))
		req.Header.Set("Content-Type", "application/json")
		status, _ := do(t, req)
		return status
	}
	for _, c := range []struct {
		site, user, password string
		want                 int
	}{
		{siteA, "alice", appPassword, 200},                       // stored, delivered
		{siteB, "alice", appPassword, 502},                       // Nextcloud unreachable
		{siteC, "alice", appPassword, 503},                       // Vault refuses
		{siteE, "alice", appPassword, 502},                       // stored, the MCP server down
		{siteA, "mallory", "Wrong-Passw-ord00-Guess-00001", 401}, // counted
	} {
		if got := post(c.site, c.user, c.password); got != c.want {
			t.Fatalf("POST %s on %s answered %d, want %d", c.user, c.site, got, c.want)
		}
	}
	for i := 0; ; i++ { // until the limit refuses
		if got := post(siteA, "mallory", "Wrong-Passw-ord00-Guess-00001"); got == 429 {
			break
		} else if got != 401 || i > 10 {
			t.Fatalf("guess %d answered %d, want 401 until 429", i, got)
		}
	}

	// The sweep's round ends within seconds, and site E's failed delivery
	// starts a re-delivery round at once; poll the scrape until every
	// wanted series is there and the round has been counted: one record
	// owed, the MCP server still unreachable.
	counted := map[string]float64{
		`caddy_app_password_redelivery_rounds_total`:                                      1,
		`caddy_app_password_redeliveries_total{result="unreachable"}`:                     1,
		`caddy_app_password_deliveries_pending`:                                           1,
		`caddy_app_password_deliveries_total{outcome="unreachable",route="app-password"}`: 1,
	}
	var missing []string
	var exposition string
	deadline := time.Now().Add(90 * time.Second)
	for {
		exposition = scrape(t, "http://"+admin+"/metrics")
		series := seriesNames(exposition)
		missing = missing[:0]
		for _, n := range wanted {
			if !series[n] {
				missing = append(missing, n)
			}
		}
		values := sampleValues(exposition)
		for s, least := range counted {
			if v, ok := values[s]; !ok || v < least {
				missing = append(missing, fmt.Sprintf("%s >= %v", s, least))
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond) // polling the scrape, not waiting out a time
	}
	if len(missing) > 0 {
		t.Fatalf("the rules and the dashboard query series Caddy does not export after the traffic (or the re-delivery round was not counted): %v\nexported:\n%s", missing, grepLines(exposition, "caddy_app_password"))
	}
	t.Logf("every series the rules and the dashboard query is exported: %v", wanted)
}

// scrape returns the body of a Prometheus scrape.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scraping %s: %d %v", url, resp.StatusCode, err)
	}
	return string(body)
}

// seriesNames returns the names of the samples in a text exposition
// (histograms as their _bucket, _sum and _count series).
func seriesNames(exposition string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(exposition, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		out[name] = true
	}
	return out
}

// sampleValues returns the value of each sample in a text exposition, by
// the series as written there (name and labels, in the exposition's
// order: sorted by label name).
func sampleValues(exposition string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(exposition, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestDeployDashboard: the dashboard imports (valid JSON of Grafana's
// dashboard model: a uid, a title, panels with unique ids and a grid
// position), and each panel that shows data queries the module's metrics
// through the dashboard's data-source variable.
func TestDeployDashboard(t *testing.T) {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID           string `json:"uid"`
		Title         string `json:"title"`
		SchemaVersion int    `json:"schemaVersion"`
		Panels        []struct {
			ID         int                   `json:"id"`
			Type       string                `json:"type"`
			Title      string                `json:"title"`
			GridPos    *struct{ H, W int }   `json:"gridPos"`
			Datasource *struct{ UID string } `json:"datasource"`
			Targets    []struct {
				Expr  string `json:"expr"`
				RefID string `json:"refId"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.UID == "" || dash.Title == "" || dash.SchemaVersion == 0 || len(dash.Panels) == 0 {
		t.Fatalf("%s: uid %q, title %q, schemaVersion %d, %d panels", dashboardFile, dash.UID, dash.Title, dash.SchemaVersion, len(dash.Panels))
	}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] || p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Fatalf("panel %q: id %d repeated or no grid position", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Fatalf("panel %q: want queries on the ${datasource} variable", p.Title)
		}
		for _, q := range p.Targets {
			names := namesIn(q.Expr)
			if q.RefID == "" || len(names) == 0 || !strings.HasPrefix(names[0], "caddy_app_password_") {
				t.Fatalf("panel %q, query %q: want a refId and a query on the module's metrics", p.Title, q.Expr)
			}
		}
	}
}

// TestDeployAlertRules runs promtool (Debian's prometheus package) on the
// alerting rules: they parse, and their unit tests pass.
func TestDeployAlertRules(t *testing.T) {
	if testing.Short() {
		t.Skip("needs promtool: the full suite (scripts/test) installs it")
	}
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatal("promtool not found: scripts/test installs Debian's prometheus package")
	}
	for _, args := range [][]string{{"check", "rules", rulesFile}, {"test", "rules", rulesTestFile}} {
		out, err := exec.Command("promtool", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
}
