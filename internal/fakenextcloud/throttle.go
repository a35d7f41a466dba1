package fakenextcloud

import (
	"context"
	"math"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Nextcloud's brute-force protection (OC\Security\Bruteforce\Throttler
// and the constants of OCP\Security\Bruteforce\IThrottler), for the
// "login" action that every basic-auth request goes through:
//   - a failed login is registered against the request's address, by
//     subnet (an IPv4 address, an IPv6 /56);
//   - every request that carries credentials is first delayed by
//     0.1 s × 2^failures of its subnet in the last 12 hours (200 ms after
//     one failure, 25 s from eight on), successful ones included;
//   - when the delay is at its maximum and the subnet failed more than 10
//     times in the last 30 minutes, the request is refused with 429
//     "Reached maximum delay" before its credentials are looked at;
//   - after the first failure of a request that was not delayed, Nextcloud
//     sleeps once more (Session::handleLoginFailed).
//
// The address is REMOTE_ADDR or, when REMOTE_ADDR is a trusted proxy, the
// last address in X-Forwarded-For that is not one (Request::getRemoteAddress).
const (
	firstDelay  = 0.1 // seconds, doubled per failure
	maxDelay    = 25 * time.Second
	maxAttempts = 10
	delayWindow = 12 * time.Hour
	blockWindow = 30 * time.Minute
)

// Throttling is what the brute-force protection did to one request that
// carried credentials.
type Throttling struct {
	// Addr is the address Nextcloud throttled: the connection's, or the
	// client a trusted proxy named in X-Forwarded-For.
	Addr string
	// Delay is how long Nextcloud held the request. The fake sleeps it
	// only after SleepDelays.
	Delay time.Duration
	// Refused is a 429: the address had reached the maximum.
	Refused bool
	// Failed is a failed login, now registered against Addr.
	Failed bool
}

type throttle struct {
	mu         sync.Mutex
	disabled   bool
	trusted    []netip.Prefix
	bypass     []netip.Prefix
	sleepScale float64
	now        func() time.Time
	failures   []failure
	log        []Throttling
}

type failure struct {
	subnet netip.Prefix
	at     time.Time
}

func newThrottle() throttle { return throttle{now: time.Now} }

// SetTrustedProxies is Nextcloud's trusted_proxies: addresses or CIDR
// ranges whose X-Forwarded-For names the client. By default there are
// none, and the throttle sees the connection's address.
func (s *Server) SetTrustedProxies(cidrs ...string) {
	s.throttle.mu.Lock()
	defer s.throttle.mu.Unlock()
	s.throttle.trusted = mustPrefixes(cidrs)
}

// BypassBruteForce exempts addresses or CIDR ranges from the throttle, as
// Nextcloud's brute-force allow list (bruteForce whitelist_N) does.
func (s *Server) BypassBruteForce(cidrs ...string) {
	s.throttle.mu.Lock()
	defer s.throttle.mu.Unlock()
	s.throttle.bypass = append(s.throttle.bypass, mustPrefixes(cidrs)...)
}

// DisableBruteForceProtection is auth.bruteforce.protection.enabled =
// false: no failure is registered, no request is delayed.
func (s *Server) DisableBruteForceProtection() {
	s.throttle.mu.Lock()
	defer s.throttle.mu.Unlock()
	s.throttle.disabled = true
}

// SleepDelays makes the server really hold each request for its delay
// times scale (1 is Nextcloud's own timing); by default it only records
// the delays (see Throttlings), as auth.bruteforce.protection.testing does.
func (s *Server) SleepDelays(scale float64) {
	s.throttle.mu.Lock()
	defer s.throttle.mu.Unlock()
	s.throttle.sleepScale = scale
}

// SetClock sets the clock of the throttle's windows (12 hours for the
// delay, 30 minutes for the 429).
func (s *Server) SetClock(now func() time.Time) {
	s.throttle.mu.Lock()
	defer s.throttle.mu.Unlock()
	s.throttle.now = now
}

// Throttlings lists, in order, what the throttle did to each request that
// carried credentials.
func (s *Server) Throttlings() []Throttling {
	s.throttle.mu.Lock()
	defer s.throttle.mu.Unlock()
	return append([]Throttling(nil), s.throttle.log...)
}

// Throttled is how many requests from addr Nextcloud delayed or refused.
func (s *Server) Throttled(addr string) int {
	s.throttle.mu.Lock()
	defer s.throttle.mu.Unlock()
	n := 0
	for _, t := range s.throttle.log {
		if t.Addr == addr && (t.Delay > 0 || t.Refused) {
			n++
		}
	}
	return n
}

// FailedLogins is how many failed logins are registered against the
// subnet of addr.
func (s *Server) FailedLogins(addr string) int {
	s.throttle.mu.Lock()
	defer s.throttle.mu.Unlock()
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return 0
	}
	return s.throttle.count(subnet(ip), time.Time{})
}

// remoteAddress is Request::getRemoteAddress.
func (s *Server) remoteAddress(r *http.Request) string {
	remote := r.RemoteAddr
	if host, _, err := net.SplitHostPort(remote); err == nil {
		remote = host
	}
	s.throttle.mu.Lock()
	trusted := s.throttle.trusted
	s.throttle.mu.Unlock()
	if !inPrefixes(remote, trusted) {
		return remote
	}
	entries := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(entries) - 1; i >= 0; i-- {
		ip := strings.TrimSpace(entries[i])
		switch strings.Count(ip, ":") {
		case 0:
		case 1: // IPv4 with a port
			ip = ip[:strings.IndexByte(ip, ':')]
		default: // IPv6, maybe [bracketed] with a port
			if m := bracketed.FindStringSubmatch(ip); m != nil {
				ip = m[1]
			}
		}
		if inPrefixes(ip, trusted) {
			continue
		}
		if _, err := netip.ParseAddr(ip); err == nil {
			return ip
		}
	}
	return remote
}

var bracketed = regexp.MustCompile(`^\[(.+?)\](?::\d+)?$`)

// before is sleepDelayOrThrowOnMax: the delay for a request from addr, or
// refused when the address is at the maximum; i numbers the request for
// failed.
func (t *throttle) before(addr string) (_ time.Duration, refused bool, i int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delay, key, counted := t.delay(addr)
	refused = counted && delay == maxDelay && t.count(key, t.now().Add(-blockWindow)) > maxAttempts
	if refused {
		delay = 0
	}
	t.log = append(t.log, Throttling{Addr: addr, Delay: delay, Refused: refused})
	return delay, refused, len(t.log) - 1
}

// failed is registerAttempt after a failed login, with the extra sleep
// handleLoginFailed adds when the request was not delayed before.
func (t *throttle) failed(addr string, i int) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	last := &t.log[i]
	last.Failed = true
	_, key, counted := t.delay(addr)
	if !counted {
		return 0
	}
	t.failures = append(t.failures, failure{subnet: key, at: t.now()})
	if last.Delay != 0 {
		return 0
	}
	extra, _, _ := t.delay(addr)
	last.Delay += extra
	return extra
}

// delay is getDelay: 0.1 s × 2^failures, at most 25 s. counted is false
// when the protection is off or addr is exempt or not an address.
func (t *throttle) delay(addr string) (_ time.Duration, key netip.Prefix, counted bool) {
	ip, err := netip.ParseAddr(addr)
	if err != nil || t.disabled || inPrefixes(addr, t.bypass) {
		return 0, netip.Prefix{}, false
	}
	key = subnet(ip)
	n := t.count(key, t.now().Add(-delayWindow))
	switch {
	case n == 0:
		return 0, key, true
	case n > maxAttempts:
		return maxDelay, key, true
	}
	d := firstDelay * math.Pow(2, float64(n))
	if d > maxDelay.Seconds() {
		return maxDelay, key, true
	}
	return time.Duration(math.Ceil(d*1000)) * time.Millisecond, key, true
}

// count is how many failures key had after since.
func (t *throttle) count(key netip.Prefix, since time.Time) int {
	n := 0
	for _, f := range t.failures {
		if f.subnet == key && f.at.After(since) {
			n++
		}
	}
	return n
}

// sleep holds a request for d scaled, when the test asked for it.
func (t *throttle) sleep(ctx context.Context, d time.Duration) {
	t.mu.Lock()
	scale := t.sleepScale
	t.mu.Unlock()
	if d <= 0 || scale <= 0 {
		return
	}
	timer := time.NewTimer(time.Duration(float64(d) * scale))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

// subnet is IpAddress::getSubnet: IPv4 (also when mapped into IPv6) as
// itself, IPv6 by its /56.
func subnet(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(56)
	return p
}

func inPrefixes(addr string, prefixes []netip.Prefix) bool {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func mustPrefixes(cidrs []string) []netip.Prefix {
	var out []netip.Prefix
	for _, c := range cidrs {
		if !strings.Contains(c, "/") {
			ip := netip.MustParseAddr(c).Unmap()
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		out = append(out, netip.MustParsePrefix(c).Masked())
	}
	return out
}
