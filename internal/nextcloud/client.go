package nextcloud

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-apppw/caddy-apppw/internal/tlsca"
)

// ocsUserPath is the OCS v2 endpoint that answers who the credentials
// belong to. OCS v1 is not used: it answers bad credentials with HTTP 200
// and statuscode 997 (upstream issue #824), so its HTTP status proves
// nothing.
const ocsUserPath = "/ocs/v2.php/cloud/user?format=json"

// maxOCSBody bounds how much of Nextcloud's answer is read.
const maxOCSBody = 1 << 20

// Client proves app passwords against one Nextcloud server. It holds one
// http.Client for the life of a config, so connections and TLS sessions
// are reused: building a client per request was most of what made the
// original endpoint slow.
type Client struct {
	base   string // the URL as configured, placeholders replaced, no trailing slash
	check  string // base + ocsUserPath, joined once
	client *http.Client
}

// New builds the client of c, whose defaults are set. Placeholders in the
// URL are replaced with repl. It reads the CA file but makes no network
// call: Caddy must start while Nextcloud is down.
func New(c *Config, repl *caddy.Replacer) (*Client, error) {
	base := strings.TrimRight(repl.ReplaceKnown(c.URL, ""), "/")
	if u, err := url.Parse(base + ocsUserPath); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url %q is not an absolute http(s) URL", c.URL)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	if c.CACert != "" || c.InsecureSkipVerify {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // explicit opt-in, documented for labs
		if c.CACert != "" {
			pool, err := tlsca.SystemPoolWithCA(c.CACert)
			if err != nil {
				return nil, err
			}
			tlsCfg.RootCAs = pool
		}
		transport.TLSClientConfig = tlsCfg
	}
	return &Client{
		base:  base,
		check: base + ocsUserPath,
		client: &http.Client{
			Transport: transport,
			Timeout:   time.Duration(c.Timeout),
			// Never follow a redirect: it would carry the user's
			// credentials to wherever Nextcloud (or an attacker in its
			// place) points, and OCS does not redirect.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// BaseURL is Nextcloud's URL as the client reaches it.
func (c *Client) BaseURL() string { return c.base }

// SetTransport replaces the HTTP transport, before the client is used:
// tests answer Nextcloud's requests in process with it.
func (c *Client) SetTransport(rt http.RoundTripper) { c.client.Transport = rt }

// Close lets go of the kept-alive connections, and the goroutines that
// serve them: each config has its own client, and a reload must not leave
// the old one's behind.
func (c *Client) Close() error {
	c.client.CloseIdleConnections()
	return nil
}

// ocsAnswer is the part of an OCS answer the check reads. data is an
// object on success but "[]" on failure, hence RawMessage.
type ocsAnswer struct {
	OCS struct {
		Meta struct {
			StatusCode int `json:"statuscode"`
		} `json:"meta"`
		Data json.RawMessage `json:"data"`
	} `json:"ocs"`
}

// Check logs in to Nextcloud as login with password and returns nil when
// the account behind them is userID. Otherwise it returns one of the
// outcomes of errors.go: a RejectedError, a WrongUserError naming the
// account the password opens, a StatusError, a BodyError or a
// TransportError. clientIP, the address of the client the module serves,
// goes in X-Forwarded-For: a Nextcloud that trusts Caddy as a proxy then
// throttles failed logins per client, not Caddy's address for everyone.
func (c *Client) Check(ctx context.Context, login, password, userID, clientIP string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.check, nil)
	if err != nil {
		return TransportError{err}
	}
	req.Header["Authorization"] = []string{basicAuth(login, password)}
	req.Header["Ocs-Apirequest"] = ocsAPIRequest
	req.Header["Accept"] = acceptJSON
	if clientIP != "" {
		req.Header["X-Forwarded-For"] = []string{clientIP}
	}

	resp, err := c.client.Do(req)
	if err != nil {
		return TransportError{redactURLError(err)}
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return RejectedError{HTTPStatus: resp.StatusCode, OCSStatus: ocsStatus(resp.Body)}
	case resp.StatusCode != http.StatusOK:
		return StatusError{resp.StatusCode}
	}

	body, err := readBody(resp.Body)
	defer putBody(body)
	if err != nil {
		return TransportError{err}
	}
	sc, id, err := readOCS(body.Bytes())
	if err != nil {
		return BodyError{err}
	}
	if sc != 100 && sc != 200 {
		return RejectedError{HTTPStatus: resp.StatusCode, OCSStatus: sc}
	}
	if id == nil || *id == "" {
		return RejectedError{HTTPStatus: resp.StatusCode, OCSStatus: sc}
	}
	if *id != userID {
		return WrongUserError{*id}
	}
	return nil
}

// ocsStatus is the OCS status code of a refusal's body; 0 when the body
// is not OCS JSON (a proxy's answer, not Nextcloud's). Nextcloud refuses
// wrong credentials with statuscode 997: the sweep deletes a stored
// password on that, never on a bare 401.
func ocsStatus(body io.Reader) int {
	var ans ocsAnswer
	if json.NewDecoder(io.LimitReader(body, maxOCSBody)).Decode(&ans) != nil {
		return 0
	}
	return ans.OCS.Meta.StatusCode
}

// Status asks Nextcloud's unauthenticated status.php and returns its
// version, with the client's own transport, so its TLS settings are the
// ones tested. Errors name the URL and say what is wrong, for an
// operator's terminal.
func (c *Client) Status(ctx context.Context) (version string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/status.php", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s: %v", c.base, redactURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s/status.php answered HTTP %d", c.base, resp.StatusCode)
	}
	var status struct {
		Installed     bool   `json:"installed"`
		Maintenance   bool   `json:"maintenance"`
		VersionString string `json:"versionstring"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxOCSBody)).Decode(&status); err != nil {
		return "", fmt.Errorf("%s/status.php is not Nextcloud's status: %v", c.base, err)
	}
	switch {
	case !status.Installed:
		return "", fmt.Errorf("%s: Nextcloud is not installed", c.base)
	case status.Maintenance:
		return "", fmt.Errorf("%s: Nextcloud is in maintenance mode", c.base)
	}
	return status.VersionString, nil
}

// redactURLError keeps only the cause of a client error. The URL it would
// add is the configured endpoint (credentials travel in a header, never in
// the URL), so this is for short log lines, not for secrecy.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
