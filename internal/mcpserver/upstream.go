package mcpserver

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Upstream is a Handler that sends each request to the MCP server at
// Base, over Client: how re-deliveries reach the MCP server. A change the
// client made is handed on through Caddy's own reverse_proxy (the next
// handler, with the request's context); a re-delivery in the background
// has no request to ride on, so it goes straight to the MCP server's
// address, which `deliver_to_mcp <address>` names.
type Upstream struct {
	Base   *url.URL
	Client *http.Client
}

// ParseAddress reads the MCP server's address as `deliver_to_mcp` takes
// it: a URL (http or https, no query), or host:port for plain HTTP, as
// reverse_proxy's upstreams are often written.
func ParseAddress(addr string) (*url.URL, error) {
	if addr == "" {
		return nil, fmt.Errorf("the MCP server's address is empty")
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("the MCP server's address: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("the MCP server's address %q is not an http(s)://host[:port] URL", addr)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// ServeHTTP sends r to the MCP server, at Base joined with r's path, and
// copies the answer to w. Errors are transport errors: no answer came.
func (u Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	out := r.Clone(r.Context())
	target := *u.Base
	target.Path, target.RawPath = u.Base.Path+r.URL.Path, ""
	if r.URL.RawPath != "" {
		target.RawPath = u.Base.EscapedPath() + r.URL.RawPath
	}
	out.URL, out.Host, out.RequestURI = &target, "", ""
	resp, err := u.Client.Do(out)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, err = io.Copy(w, resp.Body)
	return err
}
