package redistest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy passes connections to a Server and can hold Redis's replies back:
// commands still reach Redis and run, but the client hears nothing until
// the replies are let go, as with a reply that comes after the client's
// timeout.
type Proxy struct {
	Addr string // host:port

	mu      sync.Mutex
	holding bool
	resume  chan struct{} // closed when the held replies may go on
}

// Proxy starts a proxy in front of s until the test ends.
func (s *Server) Proxy(t testing.TB) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), resume: make(chan struct{})}
	close(p.resume)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Go(func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", s.Addr)
			if err != nil {
				client.Close()
				continue
			}
			track(client)
			track(server)
			wg.Go(func() {
				_, _ = io.Copy(server, client)
				server.Close()
			})
			wg.Go(func() {
				p.copyReplies(client, server)
				client.Close()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.Hold(false)
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}

// URL is the redis:// URL of the proxy.
func (p *Proxy) URL() string { return "redis://" + p.Addr + "/0" }

// Hold holds Redis's replies back (on) or lets them go (off).
func (p *Proxy) Hold(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && !p.holding:
		p.resume = make(chan struct{})
	case !on && p.holding:
		close(p.resume)
	}
	p.holding = on
}

func (p *Proxy) copyReplies(client, server net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			p.mu.Lock()
			resume := p.resume
			p.mu.Unlock()
			<-resume
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
