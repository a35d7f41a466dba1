package caddyapppw

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
)

// ocsUserPath is the OCS v2 endpoint that answers who the credentials
// belong to. OCS v1 is not used: it answers bad credentials with HTTP 200
// and statuscode 997 (upstream issue #824), so its HTTP status proves
// nothing.
const ocsUserPath = "/ocs/v2.php/cloud/user?format=json"

// maxOCSBody bounds how much of Nextcloud's answer is read.
const maxOCSBody = 1 << 20

// nextcloud proves app passwords against a Nextcloud server. It holds one
// http.Client for the life of the config, so connections and TLS sessions
// are reused: building a client per request was most of what made the
// original endpoint slow.
type nextcloud struct {
	endpoint string
	client   *http.Client
}

// The outcomes of a check other than success. The handler maps them to the
// API's answers; only errNCRejected and errNCWrongUser count toward the rate
// limit, because an outage is not the user's fault.
var (
	errNCRejected  = errors.New("nextcloud rejected the credentials")
	errNCWrongUser = errors.New("credentials belong to another user")
)

// ncWrongUserError is errNCWrongUser with the uid Nextcloud answered: the
// account the password opens, which the attempt is counted against too.
type ncWrongUserError struct{ uid string }

func (ncWrongUserError) Error() string        { return errNCWrongUser.Error() }
func (ncWrongUserError) Is(target error) bool { return target == errNCWrongUser }

// ncStatusError is an HTTP status Nextcloud should not answer.
type ncStatusError struct{ code int }

func (e ncStatusError) Error() string { return fmt.Sprintf("nextcloud answered HTTP %d", e.code) }

// ncBodyError is an answer that is not OCS JSON.
type ncBodyError struct{ err error }

func (e ncBodyError) Error() string { return "nextcloud answer is not OCS JSON: " + e.err.Error() }

// ncTransportError is a failure to get any answer (DNS, TCP, TLS, timeout).
type ncTransportError struct{ err error }

func (e ncTransportError) Error() string { return "nextcloud unreachable: " + e.err.Error() }
func (e ncTransportError) Unwrap() error { return e.err }

func newNextcloud(baseURL string, timeout time.Duration, caFile string, insecure bool) (*nextcloud, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	if caFile != "" || insecure {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // explicit opt-in, documented for labs
		if caFile != "" {
			pool, err := systemPoolWithCA(caFile)
			if err != nil {
				return nil, err
			}
			tlsCfg.RootCAs = pool
		}
		transport.TLSClientConfig = tlsCfg
	}
	return &nextcloud{
		endpoint: strings.TrimRight(baseURL, "/") + ocsUserPath,
		client: &http.Client{
			Transport: transport,
			Timeout:   timeout,
			// Never follow a redirect: it would carry the user's
			// credentials to wherever Nextcloud (or an attacker in its
			// place) points, and OCS does not redirect.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
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

// check logs in to Nextcloud as login with password and returns nil when
// the account behind them is userID; a success for another account is an
// ncWrongUserError naming it. clientIP, the address of the client the
// module serves, goes in X-Forwarded-For: a Nextcloud that trusts Caddy as
// a proxy then throttles failed logins per client, not Caddy's address
// for everyone.
func (nc *nextcloud) check(ctx context.Context, login, password, userID, clientIP string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, nc.endpoint, nil)
	if err != nil {
		return ncTransportError{err}
	}
	req.SetBasicAuth(login, password)
	req.Header.Set("OCS-APIRequest", "true")
	req.Header.Set("Accept", "application/json")
	if clientIP != "" {
		req.Header.Set("X-Forwarded-For", clientIP)
	}

	resp, err := nc.client.Do(req)
	if err != nil {
		return ncTransportError{redactURLError(err)}
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return errNCRejected
	case resp.StatusCode != http.StatusOK:
		return ncStatusError{resp.StatusCode}
	}

	body, err := io.ReadAll(io.LimitReader(resp.Body, maxOCSBody))
	if err != nil {
		return ncTransportError{err}
	}
	var ans ocsAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return ncBodyError{err}
	}
	if sc := ans.OCS.Meta.StatusCode; sc != 100 && sc != 200 {
		return errNCRejected
	}
	var data struct {
		ID *string `json:"id"`
	}
	if json.Unmarshal(ans.OCS.Data, &data) != nil || data.ID == nil || *data.ID == "" {
		return errNCRejected
	}
	if *data.ID != userID {
		return ncWrongUserError{*data.ID}
	}
	return nil
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
