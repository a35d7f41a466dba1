package sweep_test

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
)

func fmtV(v any) string      { return fmt.Sprintf("%v", v) }
func fmtPlusV(v any) string  { return fmt.Sprintf("%+v", v) }
func fmtSharpV(v any) string { return fmt.Sprintf("%#v", v) }

func TestConfigDefaults(t *testing.T) {
	var c sweep.Config
	c.SetDefaults()
	want := sweep.Config{
		Interval: caddy.Duration(time.Hour), Rate: 2, Concurrency: 2,
		SlowThreshold: caddy.Duration(2 * time.Second), MaxFailures: 3,
	}
	if c != want {
		t.Errorf("defaults %+v, want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

func TestConfigJSON(t *testing.T) {
	var c sweep.Config
	in := `{"interval":"30m","rate":0.5,"concurrency":1,"slow_threshold":"5s","max_failures":1,"off":true}`
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	want := sweep.Config{
		Interval: caddy.Duration(30 * time.Minute), Rate: 0.5, Concurrency: 1,
		SlowThreshold: caddy.Duration(5 * time.Second), MaxFailures: 1, Off: true,
	}
	if c != want {
		t.Errorf("decoded %+v, want %+v", c, want)
	}
	out, _ := json.Marshal(sweep.Config{})
	if string(out) != "{}" {
		t.Errorf("an empty config encodes as %s, want {}", out)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		c    sweep.Config
		want string
	}{
		{sweep.Config{Interval: caddy.Duration(time.Second)}, "interval: 1s is shorter than 1m0s"},
		{sweep.Config{Rate: -1}, "rate: -1 is not in (0, 50]"},
		{sweep.Config{Rate: 51}, "rate: 51 is not in (0, 50]"},
		{sweep.Config{Rate: math.NaN()}, "rate: NaN is not in (0, 50]"},
		{sweep.Config{Concurrency: -1}, "concurrency: -1 is less than 1"},
		{sweep.Config{SlowThreshold: caddy.Duration(-time.Second)}, "slow_threshold: -1s is not positive"},
		{sweep.Config{MaxFailures: -2}, "max_failures: -2 is less than 1"},
	} {
		tc.c.SetDefaults()
		err := tc.c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.c, err, tc.want)
		}
		if _, err := sweep.New(tc.c, sweep.Deps{Store: newFakeStore(0), Checker: newFakeChecker(nil)}); err == nil {
			t.Errorf("New accepted %+v", tc.c)
		}
	}
	if _, err := sweep.New(sweep.Config{}, sweep.Deps{}); err == nil {
		t.Error("New accepted a sweeper without store and checker")
	}
}
