// Command build-caddy builds a custom Caddy from xcaddy.json with xcaddy's
// own Go library, the same builder `xcaddy build` runs:
//
//	go -C cmd/build-caddy run . -o ../../caddy
//
// It is a Go module of its own so that xcaddy (and what it imports) never
// enters the plugin's go.mod, and so never the build graph of someone who
// builds the plugin into their Caddy.
//
// xcaddy.json is xcaddy's Builder type in JSON (caddy_version, plugins,
// replacements, ...). Without -config it is the xcaddy.json of the current
// directory or of the nearest parent that has one, so the command works
// from the checkout's root and from this folder alike. A replacement path
// that is relative is taken from the directory of xcaddy.json, so "."
// means the checkout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/caddyserver/xcaddy"
)

func main() {
	recipe := flag.String("config", "", "the build recipe (default: xcaddy.json here or in the nearest parent)")
	output := flag.String("o", "caddy", "where to write the binary")
	flag.Parse()
	if *recipe == "" {
		found, err := findRecipe()
		if err != nil {
			fmt.Fprintln(os.Stderr, "build-caddy:", err)
			os.Exit(1)
		}
		*recipe = found
	}
	if err := build(*recipe, *output); err != nil {
		fmt.Fprintln(os.Stderr, "build-caddy:", err)
		os.Exit(1)
	}
}

// findRecipe looks for xcaddy.json in the working directory and then in
// each parent, as go finds go.mod.
func findRecipe() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "xcaddy.json")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no xcaddy.json here or in a parent directory; pass -config")
		}
		dir = parent
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
