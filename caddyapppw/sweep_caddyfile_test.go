package caddyapppw

import (
	"strings"
	"testing"
)

// The sweep block, in the Caddyfile and in JSON alike; without it the
// handler's JSON has no "sweep" (TestAdaptGolden pins the rest).
func TestCaddyfileSweep(t *testing.T) {
	for _, c := range []struct{ block, want string }{
		{`app_password {
			sweep {
				interval 30m
				rate 0.5
				concurrency 1
				slow_threshold 5s
				max_failures 1
			}
		}`, `{"sweep":{"interval":1800000000000,"rate":0.5,"concurrency":1,"slow_threshold":5000000000,"max_failures":1}}`},
		{`app_password {
			sweep {
				interval 1h
				rate 2
				off
			}
		}`, `{"sweep":{"interval":3600000000000,"rate":2,"off":true}}`},
		{`app_password {
			sweep off
		}`, `{"sweep":{"off":true}}`},
		{`app_password {
			sweep
		}`, `{"sweep":{}}`},
		{`app_password {
			nextcloud https://cloud.example.com
		}`, `{"nextcloud":{"url":"https://cloud.example.com"}}`},
	} {
		got, err := handlerJSON(t, c.block)
		if err != nil {
			t.Fatalf("%s: %v", c.block, err)
		}
		if got != c.want {
			t.Errorf("%s\ngot  %s\nwant %s", c.block, got, c.want)
		}
	}
}

func TestCaddyfileSweepErrors(t *testing.T) {
	for _, c := range []struct{ block, want string }{
		{"app_password {\n sweep on\n}", "sweep: unrecognized argument 'on' (only 'off')"},
		{"app_password {\n sweep off now\n}", "wrong argument count"},
		{"app_password {\n sweep {\n every 1h\n }\n}", "unrecognized sweep option 'every'"},
		{"app_password {\n sweep {\n interval soon\n }\n}", "interval: 'soon' is not a positive duration"},
		{"app_password {\n sweep {\n rate -1\n }\n}", "rate: '-1' is not a positive number"},
		{"app_password {\n sweep {\n rate NaN\n }\n}", "rate: 'NaN' is not a positive number"},
		{"app_password {\n sweep {\n rate fast\n }\n}", "rate: 'fast' is not a positive number"},
		{"app_password {\n sweep {\n concurrency 0\n }\n}", "concurrency: '0' is not a positive integer"},
		{"app_password {\n sweep {\n max_failures x\n }\n}", "max_failures: 'x' is not a positive integer"},
		{"app_password {\n sweep {\n off 1\n }\n}", "wrong argument count"},
	} {
		_, err := handlerJSON(t, c.block)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to say %q", c.block, err, c.want)
		}
	}
}

// Values the Caddyfile can express but the sweep refuses are refused at
// provisioning, named after the sweep block; nothing is dialled.
func TestSweepProvisionErrors(t *testing.T) {
	site := func(block string) string {
		return "{\n\tadmin off\n}\nhttp://127.0.0.1:0 {\n\tapp_password {\n\t\tnextcloud http://127.0.0.1:1\n\t\tvault http://127.0.0.1:1\n" + block + "\n\t}\n}\n"
	}
	for _, c := range []struct{ block, want string }{
		{"sweep {\ninterval 1s\n}", "sweep: interval: 1s is shorter than 1m0s"},
		{"sweep {\nrate 51\n}", "sweep: rate: 51 is not in (0, 50] checks per second"},
	} {
		err := validate(t, site(c.block))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to say %q", c.block, err, c.want)
		}
	}
	if err := validate(t, site("sweep {\ninterval 1m\nrate 50\n}")); err != nil {
		t.Fatalf("valid sweep refused: %v", err)
	}
}
