package caddyapppw

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
)

// vaultProxy stands between the module and the dev Vault: it counts the
// requests by method and path, and lets a test hold one request before it
// reaches Vault or its answer before it goes back, to put two requests in
// an order of the test's choosing.
type vaultProxy struct {
	URL string

	mu    sync.Mutex
	calls map[string]int // "PUT /v1/auth/approle/login" → count
	holds []*hold
}

// hold stops the next request that matches, once.
type hold struct {
	method, path string
	answered     bool          // hold the answer (true) or the request (false)
	held         chan struct{} // closed when the request is held
	release      chan struct{} // closed by the test to let it go on
}

func newVaultProxy(t *testing.T, vaultAddr string) *vaultProxy {
	t.Helper()
	target, err := url.Parse(vaultAddr)
	if err != nil {
		t.Fatal(err)
	}
	p := &vaultProxy{calls: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if h := p.take(resp.Request, true); h != nil {
			close(h.held)
			<-h.release
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.calls[r.Method+" "+r.URL.Path]++
		p.mu.Unlock()
		if h := p.take(r, false); h != nil {
			close(h.held)
			<-h.release
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// holdNext arms a hold on the next request with method and path (e.g.
// "/v1/secret/data/x"): its answer when answered, else the request itself.
func (p *vaultProxy) holdNext(method, path string, answered bool) *hold {
	h := &hold{method: method, path: path, answered: answered, held: make(chan struct{}), release: make(chan struct{})}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holds = append(p.holds, h)
	return h
}

func (p *vaultProxy) take(r *http.Request, answered bool) *hold {
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

// count is how many requests with method and path reached the proxy.
func (p *vaultProxy) count(method, path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[method+" "+path]
}
