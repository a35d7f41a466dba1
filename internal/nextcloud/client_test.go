package nextcloud

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
)

const alicePW = "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"

func newClient(t *testing.T, nc *fakenextcloud.Server) *Client {
	t.Helper()
	cfg := &Config{URL: nc.URL + "/"}
	cfg.SetDefaults()
	c, err := New(cfg, caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Each answer of Nextcloud is one typed outcome, with what the sweep and
// the handler read from it: the status of a rejection, the uid a password
// opens, the status of an outage.
func TestCheckOutcomes(t *testing.T) {
	nc := fakenextcloud.New(t)
	nc.DisableBruteForceProtection()
	nc.AddUser("alice", "", alicePW)
	c := newClient(t, nc)

	if err := c.Check(t.Context(), "alice", alicePW, "alice", "203.0.113.7"); err != nil {
		t.Fatalf("valid password: %v", err)
	}
	if ff := nc.ForwardedFor(); ff[len(ff)-1] != "203.0.113.7" {
		t.Fatalf("X-Forwarded-For %q", ff[len(ff)-1])
	}

	var rej RejectedError
	err := c.Check(t.Context(), "alice", "wrong-wrong-wrong-wrong", "alice", "")
	if !errors.Is(err, ErrRejected) || !errors.As(err, &rej) || rej != (RejectedError{HTTPStatus: 401, OCSStatus: 997}) {
		t.Fatalf("wrong password: %#v", err)
	}
	// A 401 that is not Nextcloud's OCS answer (a proxy's basic_auth in
	// front of it) says nothing of the password: no OCS status.
	nc.SetFault(fakenextcloud.Fault{BareStatus: 401})
	err = c.Check(t.Context(), "alice", alicePW, "alice", "")
	if !errors.As(err, &rej) || rej != (RejectedError{HTTPStatus: 401}) {
		t.Fatalf("a 401 without an OCS body: %#v", err)
	}
	nc.SetFault(fakenextcloud.Fault{})
	nc.SetFault(fakenextcloud.Fault{V1Answers: true}) // HTTP 200 with OCS 997
	err = c.Check(t.Context(), "alice", "wrong-wrong-wrong-wrong", "alice", "")
	if !errors.As(err, &rej) || rej != (RejectedError{HTTPStatus: 200, OCSStatus: 997}) {
		t.Fatalf("OCS 997 in a 200: %#v", err)
	}

	var wrong WrongUserError
	nc.SetFault(fakenextcloud.Fault{WrongID: "mallory"})
	err = c.Check(t.Context(), "alice", alicePW, "alice", "")
	if !errors.Is(err, ErrWrongUser) || !errors.As(err, &wrong) || wrong.UID != "mallory" {
		t.Fatalf("another user's password: %#v", err)
	}

	var status StatusError
	for _, f := range []fakenextcloud.Fault{{Status: 503}, {RedirectTo: "http://127.0.0.1:1/steal"}} {
		nc.SetFault(f)
		err = c.Check(t.Context(), "alice", alicePW, "alice", "")
		if !errors.As(err, &status) || errors.Is(err, ErrRejected) {
			t.Fatalf("%+v: %#v", f, err)
		}
	}
	if status.Code != 302 {
		t.Fatalf("redirect answered as %d, not followed", status.Code)
	}

	var body BodyError
	nc.SetFault(fakenextcloud.Fault{HTML: true})
	if err = c.Check(t.Context(), "alice", alicePW, "alice", ""); !errors.As(err, &body) {
		t.Fatalf("HTML page: %#v", err)
	}

	var transport TransportError
	nc.SetFault(fakenextcloud.Fault{Delay: time.Minute})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err = c.Check(ctx, "alice", alicePW, "alice", ""); !errors.As(err, &transport) || strings.Contains(err.Error(), alicePW) {
		t.Fatalf("no answer in time: %#v", err)
	}
}

func TestStatus(t *testing.T) {
	nc := fakenextcloud.New(t)
	c := newClient(t, nc)
	if v, err := c.Status(t.Context()); err != nil || v != "31.0.4" {
		t.Fatalf("status: %q %v", v, err)
	}
	nc.SetFault(fakenextcloud.Fault{Maintenance: true})
	if _, err := c.Status(t.Context()); err == nil || err.Error() != nc.URL+": Nextcloud is in maintenance mode" {
		t.Fatalf("maintenance: %v", err)
	}
}

func TestConfig(t *testing.T) {
	var c Config
	if err := c.Validate(); err == nil || err.Error() != "url is required" {
		t.Fatalf("no url: %v", err)
	}
	c = Config{URL: "https://cloud.example.com", Timeout: -1}
	if err := c.Validate(); err == nil || err.Error() != "timeout must be positive" {
		t.Fatalf("negative timeout: %v", err)
	}
	c.Timeout = 0
	c.SetDefaults()
	if time.Duration(c.Timeout) != DefaultTimeout || c.Validate() != nil {
		t.Fatalf("defaults: %+v", c)
	}
	for _, u := range []string{"ftp://nc", "nc.example.com", "{env.NO_SUCH_VARIABLE_HERE}"} {
		_, err := New(&Config{URL: u}, caddy.NewReplacer())
		if want := `url "` + u + `" is not an absolute http(s) URL`; err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", u, err, want)
		}
	}
}
