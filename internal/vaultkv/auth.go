package vaultkv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
	"github.com/hashicorp/vault/api/auth/kubernetes"
	"go.uber.org/zap"
)

// Login backoff: logins that a failure causes (a login that failed, a
// token that Vault refused) are spaced out, doubling from the minimum to
// the maximum, so a broken setup costs Vault one login per interval and
// not one per request.
const (
	minLoginBackoff = time.Second
	// MaxLoginBackoff is the longest a failure-caused login waits.
	MaxLoginBackoff = 30 * time.Second
	// staticRetryMin is the first wait before a static token's failed
	// lookup is tried again: short, so a brief outage at the first
	// request leaves a short-lived token time to be renewed.
	staticRetryMin = 500 * time.Millisecond
)

// auth keeps the Vault client's token valid for one config.
//
//   - token: used as given; renewed with a LifetimeWatcher while Vault says
//     it is renewable. The lookup that starts the renewal is retried until
//     it succeeds, so a Vault that is down or sealed at the first request
//     does not leave the token to expire.
//   - token_file: the file a Vault Agent sink writes. It is stat'ed before
//     each request and re-read when it changed, and re-read once when Vault
//     answers 403, so a rotated token is used without a restart.
//   - approle, kubernetes: logged in on first use (never in Provision),
//     renewed with a LifetimeWatcher, and logged in again ahead of the max
//     TTL, or when Vault refuses the token itself. A 403 is also what a
//     policy that denies the request gets, which a new login cannot heal:
//     lookup-self tells the two apart. One login runs at a time, and the
//     logins that failures cause wait for a backoff.
//
// The goroutines it starts end when close is called (Store.Close), so a config
// reload leaks none; a login stops the renewal of the token it replaces.
type auth struct {
	client    *api.Client
	logger    *zap.Logger
	method    string                                         // for logs: token, token_file, approle, kubernetes
	login     func(context.Context) (*api.SecretAuth, error) // nil unless a login method
	tokenFile string
	now       func() time.Time // the backoff's clock

	mu        sync.Mutex
	gen       uint64 // bumped whenever the client gets a new token
	loggedIn  bool
	fileMod   time.Time
	fileSize  int64
	backoff   loginBackoff
	lastErr   error              // why the last login failed, while backing off
	stopRenew context.CancelFunc // ends the renewal of the current login's token
	// staticOnce starts the static token's renewal loop, which retries
	// its lookup until it succeeds.
	staticOnce sync.Once

	ctx    context.Context // ends at close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// loginBackoff is when the next failure-caused login may run.
type loginBackoff struct {
	delay time.Duration
	next  time.Time
}

// failed pushes the next login back: twice the last delay, or the
// minimum again when the last failure is long past.
func (b *loginBackoff) failed(now time.Time) {
	if now.Sub(b.next) > MaxLoginBackoff {
		b.delay = 0
	}
	b.delay = min(max(2*b.delay, minLoginBackoff), MaxLoginBackoff)
	b.next = now.Add(b.delay)
}

func newAuth(client *api.Client, v *Config, logger *zap.Logger, now func() time.Time) *auth {
	ctx, cancel := context.WithCancel(context.Background())
	a := &auth{client: client, logger: logger, ctx: ctx, cancel: cancel, method: "token", tokenFile: v.TokenFile, now: now}
	switch {
	case v.TokenFile != "":
		a.method = "token_file"
	case v.AppRole != nil:
		a.method, a.login = "approle", appRoleLogin(client, v.AppRole)
	case v.Kubernetes != nil:
		a.method, a.login = "kubernetes", kubernetesLogin(client, v.Kubernetes)
	}
	return a
}

// close stops the renewal goroutines and waits for them.
func (a *auth) close() {
	a.cancel()
	a.wg.Wait()
}

// do runs op with a valid token. When Vault refuses the token (403) and
// the method can get a new one, it gets it and runs op once more.
func (a *auth) do(ctx context.Context, op func() error) error {
	gen, err := a.ensure(ctx)
	if err != nil {
		return err
	}
	err = op()
	if !isForbidden(err) || a.method == "token" {
		return err
	}
	renewed, rerr := a.refresh(ctx, gen)
	if rerr != nil {
		return fmt.Errorf("%w (and getting a new token failed: %v)", err, rerr)
	}
	if !renewed {
		return err
	}
	return op()
}

// ensure makes sure the client holds the current token and returns its
// generation.
func (a *auth) ensure(ctx context.Context) (uint64, error) {
	switch a.method {
	case "token":
		a.staticOnce.Do(a.goRenewStaticToken)
		return 0, nil
	case "token_file":
		a.mu.Lock()
		defer a.mu.Unlock()
		if _, err := a.readTokenFile(false); err != nil {
			return a.gen, err
		}
		return a.gen, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.loggedIn {
		if err := a.logIn(ctx); err != nil {
			return a.gen, err
		}
	}
	return a.gen, nil
}

// refresh gets a new token after Vault answered 403 to the one of
// generation gen, unless another request already did. It reports whether
// the client now holds a different token. A login method logs in again
// only when lookup-self says the token itself is refused: a policy that
// denies the request would deny the next token too.
func (a *auth) refresh(ctx context.Context, gen uint64) (bool, error) {
	a.mu.Lock()
	if a.gen != gen {
		a.mu.Unlock()
		return true, nil
	}
	if a.method == "token_file" {
		defer a.mu.Unlock()
		return a.readTokenFile(true)
	}
	token := a.client.Token()
	a.mu.Unlock()

	// Outside the lock: the other requests go on while Vault answers.
	if !a.tokenRefused(ctx, token) {
		return false, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gen != gen {
		return true, nil
	}
	a.logger.Info("vault refused the token; logging in again", zap.String("auth", a.method))
	a.loggedIn = false
	a.stopRenewal()
	if err := a.logIn(ctx); err != nil {
		return false, err
	}
	// A token refused is a failure too: should the new one be refused
	// as well, the login after it waits.
	a.backoff.failed(a.now())
	return true, nil
}

// tokenRefused reports whether Vault refuses token itself: its
// lookup-self, which Vault's default policy allows every token, answers
// 403. Any other outcome (valid, or Vault unreachable) is not a reason to
// log in again.
func (a *auth) tokenRefused(ctx context.Context, token string) bool {
	c, err := a.client.Clone()
	if err != nil {
		return false
	}
	c.SetToken(token)
	_, err = c.Auth().Token().LookupSelfWithContext(ctx)
	return isForbidden(err)
}

// readTokenFile loads the token file if it changed since the last read, or
// always when force. It reports whether the token changed. Callers hold mu.
func (a *auth) readTokenFile(force bool) (bool, error) {
	fi, err := os.Stat(a.tokenFile)
	if err != nil {
		return false, fmt.Errorf("token_file: %w", err)
	}
	if !force && a.gen > 0 && fi.ModTime().Equal(a.fileMod) && fi.Size() == a.fileSize {
		return false, nil
	}
	data, err := os.ReadFile(a.tokenFile)
	if err != nil {
		return false, fmt.Errorf("token_file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return false, errors.New("token_file: file is empty")
	}
	a.fileMod, a.fileSize = fi.ModTime(), fi.Size()
	if token == a.client.Token() {
		return false, nil
	}
	a.client.SetToken(token)
	a.gen++
	if a.gen > 1 {
		a.logger.Info("vault token file changed; using the new token", zap.String("file", a.tokenFile))
	}
	return true, nil
}

// logIn runs the login method, installs the new token and starts renewing
// it, in place of the token it replaces. Within the backoff of a failure
// it does not try and answers why. Callers hold mu, so one login runs at
// a time.
func (a *auth) logIn(ctx context.Context) error {
	now := a.now()
	if wait := a.backoff.next.Sub(now); wait > 0 {
		if a.lastErr != nil {
			return fmt.Errorf("%w (next login attempt in %s)", a.lastErr, wait)
		}
		return fmt.Errorf("vault %s: the new token was refused too; next login attempt in %s", a.method, wait)
	}
	auth, err := a.login(ctx)
	if err != nil {
		a.loggedIn = false
		a.lastErr = fmt.Errorf("vault %s login: %w", a.method, err)
		a.backoff.failed(now)
		return a.lastErr
	}
	a.lastErr = nil
	a.stopRenewal()
	a.client.SetToken(auth.ClientToken)
	a.gen++
	a.loggedIn = true
	a.logger.Info("vault login",
		zap.String("auth", a.method),
		zap.Duration("ttl", time.Duration(auth.LeaseDuration)*time.Second),
		zap.Bool("renewable", auth.Renewable))
	if auth.Renewable {
		ctx, cancel := context.WithCancel(a.ctx)
		a.stopRenew = cancel
		a.goWatch(ctx, &api.Secret{Auth: auth}, a.gen)
	}
	return nil
}

// stopRenewal ends the renewal of the current login's token, which is
// being replaced or was refused. Callers hold mu.
func (a *auth) stopRenewal() {
	if a.stopRenew != nil {
		a.stopRenew()
		a.stopRenew = nil
	}
}

// errRenewalLate ends a renewal whose token was not renewed by
// renewDeadline of its TTL.
var errRenewalLate = errors.New("token not renewed in time")

// renewDeadline is the share of a token's TTL after which a token still
// not renewed is given up (the watcher renews at about 2/3). The watcher
// alone can let a token expire: near the max TTL Vault answers a renewal
// with an error, and the client's retries outlast the last second.
const renewDeadline = 0.8

// renew keeps secret's token renewed with a LifetimeWatcher until the
// watcher gives up, and returns why (nil: the max TTL is near;
// errRenewalLate: no renewal came in time); stopped means ctx ended it
// first (close, or the token was replaced).
func (a *auth) renew(ctx context.Context, secret *api.Secret) (stopped bool, err error) {
	client, err := a.watcherClient(ctx)
	if err != nil {
		return false, err
	}
	w, err := client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: secret})
	if err != nil {
		return false, err
	}
	a.wg.Go(w.Start) // close waits for it: its requests end with ctx
	defer w.Stop()
	late := time.NewTimer(time.Hour)
	defer late.Stop()
	due := func(lease int) {
		late.Stop()
		if lease > 0 {
			late.Reset(time.Duration(float64(lease) * renewDeadline * float64(time.Second)))
		}
	}
	due(secret.Auth.LeaseDuration)
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case r := <-w.RenewCh():
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				due(r.Secret.Auth.LeaseDuration)
				a.logger.Debug("vault token renewed", zap.String("auth", a.method),
					zap.Duration("ttl", time.Duration(r.Secret.Auth.LeaseDuration)*time.Second))
			}
		case <-late.C:
			return false, errRenewalLate
		case err := <-w.DoneCh():
			return false, err
		}
	}
}

// watcherClient is the client of a LifetimeWatcher that renews until ctx
// ends: a clone of the client whose requests end with ctx and are not
// retried after it. Vault's library gives a renewal no context, so with
// the client itself the watcher's goroutine would outlive its config,
// waiting on Vault or before a retry.
func (a *auth) watcherClient(ctx context.Context) (*api.Client, error) {
	cfg := a.client.CloneConfig()
	hc := *cfg.HttpClient
	if hc.Transport == nil {
		hc.Transport = http.DefaultTransport
	}
	hc.Transport = endWith{base: hc.Transport, ctx: ctx}
	cfg.HttpClient = &hc
	cfg.CheckRetry = func(rctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, err
		}
		return api.DefaultRetryPolicy(rctx, resp, err)
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetHeaders(a.client.Headers()) // the namespace
	c.SetToken(a.client.Token())
	return c, nil
}

// endWith is a transport whose requests also end when ctx ends.
type endWith struct {
	base http.RoundTripper
	ctx  context.Context
}

func (t endWith) RoundTrip(r *http.Request) (*http.Response, error) {
	rctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(t.ctx, cancel)
	end := func() {
		stop()
		cancel()
	}
	resp, err := t.base.RoundTrip(r.WithContext(rctx))
	if err != nil {
		end()
		return nil, err
	}
	resp.Body = endingBody{resp.Body, end}
	return resp, nil
}

// endingBody lets go of its request's context when it is closed.
type endingBody struct {
	io.ReadCloser
	end func()
}

func (b endingBody) Close() error {
	err := b.ReadCloser.Close()
	b.end()
	return err
}

// goWatch renews the login of generation gen until it can no longer be
// renewed, then logs in again ahead of its expiry. ctx ends it when the
// token is replaced.
func (a *auth) goWatch(ctx context.Context, secret *api.Secret, gen uint64) {
	a.wg.Go(func() {
		stopped, err := a.renew(ctx, secret)
		if stopped {
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.gen != gen || a.ctx.Err() != nil {
			return // a newer login already replaced this one
		}
		switch {
		case err == nil:
			a.logger.Info("vault token reached its max TTL; logging in again", zap.String("auth", a.method))
		case errors.Is(err, errRenewalLate):
			a.logger.Info("vault token not renewed in time; logging in again", zap.String("auth", a.method))
		default:
			a.logger.Warn("vault token renewal failed; logging in again", zap.String("auth", a.method), zap.Error(err))
		}
		if err := a.logIn(a.ctx); err != nil {
			// The next request tries again.
			a.logger.Warn("vault login failed", zap.String("auth", a.method), zap.Error(err))
		}
	})
}

// goRenewStaticToken keeps the configured token renewed while Vault says
// it is renewable. Its lookup is retried, with a backoff, until it
// succeeds: a Vault that is down or sealed when the first request comes
// must not leave the token to expire. It runs in the background so no
// request waits for it.
func (a *auth) goRenewStaticToken() {
	a.wg.Go(func() {
		var delay time.Duration
		for {
			if delay > 0 {
				t := time.NewTimer(delay)
				select {
				case <-a.ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			delay = min(max(2*delay, staticRetryMin), MaxLoginBackoff)
			ctx, cancel := context.WithTimeout(a.ctx, a.client.ClientTimeout())
			sec, err := a.client.Auth().Token().LookupSelfWithContext(ctx)
			cancel()
			switch {
			case a.ctx.Err() != nil:
				return
			case isForbidden(err):
				a.logger.Warn("vault refused the token; it cannot be renewed", zap.Error(err))
				return
			case err != nil:
				a.logger.Warn("vault token lookup failed; trying again", zap.Duration("in", delay), zap.Error(vaultError(err)))
				continue
			}
			renewable, _ := sec.TokenIsRenewable()
			ttl, _ := sec.TokenTTL()
			if !renewable || ttl == 0 {
				return
			}
			delay = 0
			stopped, err := a.renew(a.ctx, &api.Secret{
				Auth: &api.SecretAuth{ClientToken: a.client.Token(), Renewable: true, LeaseDuration: int(ttl.Seconds())},
			})
			if stopped {
				return
			}
			if err == nil {
				a.logger.Warn("vault token reached its max TTL; it will expire")
				return
			}
			// The watcher retried until the token's TTL ran out; the
			// lookup says whether it is still there.
			a.logger.Warn("vault token renewal failed; looking it up again", zap.Error(vaultError(err)))
		}
	})
}

func appRoleLogin(client *api.Client, c *AppRoleConfig) func(context.Context) (*api.SecretAuth, error) {
	return func(ctx context.Context) (*api.SecretAuth, error) {
		opts := []approle.LoginOption{approle.WithMountPath(c.Mount)}
		if c.Wrapped {
			opts = append(opts, approle.WithWrappingToken())
		}
		roleID := c.RoleID
		if c.RoleIDFile != "" {
			data, err := os.ReadFile(c.RoleIDFile)
			if err != nil {
				return nil, err
			}
			roleID = strings.TrimSpace(string(data))
		}
		method, err := approle.NewAppRoleAuth(roleID, &approle.SecretID{
			FromFile: c.SecretIDFile, FromEnv: c.SecretIDEnv, FromString: c.SecretID,
		}, opts...)
		if err != nil {
			return nil, err
		}
		return loginWith(ctx, client, method)
	}
}

func kubernetesLogin(client *api.Client, c *KubernetesConfig) func(context.Context) (*api.SecretAuth, error) {
	return func(ctx context.Context) (*api.SecretAuth, error) {
		// Built per login: projected service-account tokens rotate, and
		// the helper reads the file when it is built.
		method, err := kubernetes.NewKubernetesAuth(c.Role,
			kubernetes.WithMountPath(c.Mount), kubernetes.WithServiceAccountTokenPath(c.TokenPath))
		if err != nil {
			return nil, err
		}
		return loginWith(ctx, client, method)
	}
}

// loginWith logs in on a clone of client without its (maybe expired)
// token, and returns the new auth.
func loginWith(ctx context.Context, client *api.Client, method api.AuthMethod) (*api.SecretAuth, error) {
	c, err := client.Clone()
	if err != nil {
		return nil, err
	}
	c.ClearToken()
	sec, err := method.Login(ctx, c)
	if err != nil {
		return nil, err
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, errors.New("login answer holds no token")
	}
	return sec.Auth, nil
}

// isForbidden reports Vault's 403: an expired, revoked or unknown token,
// or a policy that does not allow the request.
func isForbidden(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}
