package nextcloud

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// okAnswer is the body of Nextcloud's OCS answer for user alice, as
// Nextcloud 30 sends it.
const okAnswer = `{"ocs":{"meta":{"status":"ok","statuscode":200,"message":"OK","totalitems":"","itemsperpage":""},"data":{"enabled":true,"storageLocation":"/var/www/html/data/alice","id":"alice","lastLogin":1800000000000,"backend":"Database","subadmin":[],"quota":{"free":1,"used":0,"total":1,"relative":0,"quota":-3},"email":null,"displayname":"alice","phone":"","address":"","website":"","twitter":"","groups":["users"],"language":"en","locale":""}}}`

const rejectedAnswer = `{"ocs":{"meta":{"status":"failure","statuscode":997,"message":"Current user is not logged in","totalitems":"","itemsperpage":""},"data":[]}}`

// cannedNC is a Nextcloud that answers every request on a connection
// with the same bytes, allocating nothing per request: a benchmark then
// counts the client's allocations (its real transport and timeout
// included), not a server's. It returns the URL.
func cannedNC(b *testing.B, status int, body string) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	resp := []byte(fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), len(body), body))
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go answerEach(conn, resp)
		}
	}()
	return "http://" + ln.Addr().String()
}

var endOfHeader = []byte("\r\n\r\n")

// answerEach writes resp for each request head read from conn (the
// check's GET has no body).
func answerEach(conn net.Conn, resp []byte) {
	defer conn.Close()
	buf := make([]byte, 16<<10)
	have := 0
	for have < len(buf) {
		n, err := conn.Read(buf[have:])
		if err != nil {
			return
		}
		have += n
		for {
			i := bytes.Index(buf[:have], endOfHeader)
			if i < 0 {
				break
			}
			have = copy(buf, buf[i+len(endOfHeader):have])
			if _, err := conn.Write(resp); err != nil {
				return
			}
		}
	}
}

func benchClient(b *testing.B, url string) *Client {
	b.Helper()
	cfg := &Config{URL: url}
	cfg.SetDefaults()
	c, err := New(cfg, caddy.NewReplacer())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// BenchmarkCheckOK is the check of a valid password: the request built
// and sent, the answer read and decoded.
func BenchmarkCheckOK(b *testing.B) {
	c := benchClient(b, cannedNC(b, http.StatusOK, okAnswer))
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Check(ctx, "alice", alicePW, "alice", "192.0.2.10"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckRejected is the check of a wrong password.
func BenchmarkCheckRejected(b *testing.B) {
	c := benchClient(b, cannedNC(b, http.StatusUnauthorized, rejectedAnswer))
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Check(ctx, "alice", alicePW, "alice", "192.0.2.10"); err == nil {
			b.Fatal("accepted")
		}
	}
}
