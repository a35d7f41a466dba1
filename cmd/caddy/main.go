// Command caddy is Caddy with its standard modules plus caddyapppw, so the
// product runs with `go run ./cmd/caddy run --config Caddyfile.example`
// without xcaddy. It is the same main that xcaddy generates.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddy-apppw/caddy-apppw/caddyapppw"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func main() {
	caddycmd.Main()
}
