// Package e2e tests the deployment as operators run it: the Caddy binary
// built from xcaddy.json, Caddyfile.example, the dev Vault, a fake
// Nextcloud, and a real MCP server and client from the official Go SDK.
// It is a module of its own so the SDK stays out of the product's go.mod.
package e2e
