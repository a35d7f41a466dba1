package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// -profile DIR: a CPU profile of the running Caddy under POST load, from
// its admin endpoint (Caddy serves net/http/pprof there), and the top of
// it by `go tool pprof`, for BENCHMARKS.md's "profile top before/after".
// The profile is taken in a load run of its own after the measured
// rounds: sampling costs Caddy a little CPU, which must not land in the
// figures.

// profileTop is how many entries of the profile the report shows.
const profileTop = 15

// caddyProfile runs load for the profile's seconds (and a moment more, so
// the load covers the whole profile) while it fetches
// admin/debug/pprof/profile. It writes the profile and its top to dir and
// returns the top and the load's result.
func caddyProfile(pl placement, admin, dir string, seconds int, load func(time.Duration) result) (string, result, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", result{}, err
	}
	type fetched struct {
		data []byte
		err  error
	}
	got := make(chan fetched, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second+time.Minute)
		defer cancel()
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, seconds)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- fetched{err: err}
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: status %d: %.200q", url, resp.StatusCode, data)
		}
		got <- fetched{data, err}
	}()
	r := load(time.Duration(seconds)*time.Second + 500*time.Millisecond)
	f := <-got
	if f.err != nil {
		return "", r, f.err
	}
	file := filepath.Join(dir, "caddy-post.pprof")
	if err := os.WriteFile(file, f.data, 0o644); err != nil {
		return "", r, err
	}
	var top bytes.Buffer
	cmd := pl.onAllCPUs("go", "tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", profileTop), file)
	cmd.Stdout, cmd.Stderr = &top, &top
	if err := cmd.Run(); err != nil {
		return "", r, fmt.Errorf("go tool pprof: %w: %s", err, top.Bytes())
	}
	return top.String(), r, os.WriteFile(filepath.Join(dir, "caddy-post-top.txt"), top.Bytes(), 0o644)
}
