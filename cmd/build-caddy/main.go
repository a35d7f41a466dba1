// Command build-caddy builds a custom Caddy from xcaddy.json with xcaddy's
// own Go library, the same builder `xcaddy build` runs:
//
//	go run ./cmd/build-caddy -o ./caddy
//
// xcaddy.json is xcaddy's Builder type in JSON (caddy_version, plugins,
// replacements, ...). A replacement path that is relative is taken from
// the directory of xcaddy.json, so "." means this checkout.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/caddyserver/xcaddy"
)

func main() {
	recipe := flag.String("config", "xcaddy.json", "the build recipe")
	output := flag.String("o", "caddy", "where to write the binary")
	flag.Parse()
	if err := build(*recipe, *output); err != nil {
		fmt.Fprintln(os.Stderr, "build-caddy:", err)
		os.Exit(1)
	}
}

func build(recipe, output string) error {
	data, err := os.ReadFile(recipe)
	if err != nil {
		return err
	}
	var b xcaddy.Builder
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return fmt.Errorf("%s: %w", recipe, err)
	}
	base, err := filepath.Abs(filepath.Dir(recipe))
	if err != nil {
		return err
	}
	for i, r := range b.Replacements {
		if p := string(r.New); strings.HasPrefix(p, ".") {
			b.Replacements[i].New = xcaddy.ReplacementPath(filepath.Join(base, p))
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return b.Build(ctx, output)
}
