package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"

	// The app_password directive and handler, so that a Caddyfile using
	// them adapts, and Caddy's standard modules (reverse_proxy & co.) that
	// the same Caddyfile uses around it.
	_ "github.com/caddy-apppw/caddy-apppw/caddyapppw"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// vaultConfig reads the config Caddy runs (a Caddyfile, or JSON, or what
// adapter makes of it — as `caddy run --config --adapter` does) and
// returns the Vault settings of its app_password handler, defaults set and
// checked as the handler's Provision does. Several handlers are fine when
// they name the same Vault the same way; otherwise it cannot tell which
// one the users belong to.
func vaultConfig(configPath, adapter string) (*vaultkv.Config, error) {
	raw, _, _, err := caddycmd.LoadConfig(configPath, adapter)
	if err != nil {
		return nil, err
	}
	var cfg any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, err
	}
	handlers := appPasswordHandlers(cfg, nil)
	if len(handlers) == 0 {
		return nil, errors.New("no app_password handler in it")
	}
	var first *vaultkv.Config
	for i, h := range handlers {
		var hc struct {
			Vault *vaultkv.Config `json:"vault"`
		}
		if err := json.Unmarshal(h, &hc); err != nil {
			return nil, fmt.Errorf("app_password handler %d: %w", i+1, err)
		}
		c := hc.Vault
		if c == nil {
			c = new(vaultkv.Config) // all from VAULT_*, as the handler does
		}
		c.SetDefaults()
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("app_password handler %d: vault: %w", i+1, err)
		}
		if first == nil {
			first = c
		} else if !reflect.DeepEqual(first, c) {
			return nil, fmt.Errorf("its %d app_password handlers have different vault settings: give a config with the one to import into", len(handlers))
		}
	}
	return first, nil
}

// appPasswordHandlers walks a JSON config and returns every object whose
// "handler" is app_password, in routes and subroutes alike, in a stable
// order.
func appPasswordHandlers(v any, acc []json.RawMessage) []json.RawMessage {
	switch t := v.(type) {
	case map[string]any:
		if t["handler"] == "app_password" {
			b, _ := json.Marshal(t) // decoded JSON always encodes
			return append(acc, b)
		}
		for _, k := range slices.Sorted(maps.Keys(t)) {
			acc = appPasswordHandlers(t[k], acc)
		}
	case []any:
		for _, e := range t {
			acc = appPasswordHandlers(e, acc)
		}
	}
	return acc
}
