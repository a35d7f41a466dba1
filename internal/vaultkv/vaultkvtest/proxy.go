// Package vaultkvtest holds what the tests of vaultkv and of the handler
// share about Vault: a proxy that counts and holds requests on their way
// to the dev Vault.
package vaultkvtest

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
)

// Proxy stands between the module and the dev Vault: it counts the
// requests by method and path, and lets a test hold one request before it
// reaches Vault or its answer before it goes back, to put two requests in
// an order of the test's choosing.
type Proxy struct {
	URL string

	mu    sync.Mutex
	calls map[string]int // "PUT /v1/auth/approle/login" → count
	holds []*Hold        // armed
	all   []*Hold        // armed or taken, released at the end
}

// Hold stops the next request that matches, once.
type Hold struct {
	// Held is closed when the request (or its answer) is held.
	Held chan struct{}

	method, path string
	answered     bool          // hold the answer (true) or the request (false)
	release      chan struct{} // closed by Let
	once         sync.Once
}

// Let lets the held request go on.
func (h *Hold) Let() { h.once.Do(func() { close(h.release) }) }

// NewProxy starts a proxy to the Vault at vaultAddr, closed when t ends.
func NewProxy(t testing.TB, vaultAddr string) *Proxy {
	t.Helper()
	target, err := url.Parse(vaultAddr)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{calls: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if h := p.take(resp.Request, true); h != nil {
			close(h.Held)
			<-h.release
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.calls[r.Method+" "+r.URL.Path]++
		p.mu.Unlock()
		if h := p.take(r, false); h != nil {
			close(h.Held)
			<-h.release
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { // before Close, which waits for held requests
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, h := range p.all {
			h.Let()
		}
	})
	p.URL = srv.URL
	return p
}

// HoldNext arms a hold on the next request with method and path (e.g.
// "/v1/secret/data/x"): its answer when answered, else the request itself.
func (p *Proxy) HoldNext(method, path string, answered bool) *Hold {
	h := &Hold{method: method, path: path, answered: answered, Held: make(chan struct{}), release: make(chan struct{})}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holds = append(p.holds, h)
	p.all = append(p.all, h)
	return h
}

func (p *Proxy) take(r *http.Request, answered bool) *Hold {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, h := range p.holds {
		if h.method == r.Method && h.path == r.URL.Path && h.answered == answered {
			p.holds = append(p.holds[:i], p.holds[i+1:]...)
			return h
		}
	}
	return nil
}

// Count is how many requests with method and path reached the proxy.
func (p *Proxy) Count(method, path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[method+" "+path]
}
