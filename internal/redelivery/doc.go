// Package redelivery keeps the MCP server's copy of the app passwords
// following Vault.
//
// With deliver_to_mcp, Vault is the record and the MCP server's table a
// replica. The handler hands each change on while it answers the client;
// when that fails (the MCP server is down, answers 5xx, times out), the
// record in Vault is marked with the change still owed (Record.MCPPending)
// and a Worker delivers it in the background until the MCP server holds
// what Vault holds. The mark lives in Vault, beside the secret, so a
// reload, a restart or another replica finds it; a lease (the sweep's
// kind, Redis or Vault) lets one replica at a time do the rounds.
//
// The rules that keep the replica right under concurrent changes are in
// mark.go: a later change supersedes an earlier pending one, and a
// delivery clears a mark only if the record is still the one delivered.
//
// The package knows neither Caddy's HTTP server nor the handler: the
// handler gives it a Store (its Vault store), a Deliver function (a
// request to the MCP server built from a record), a Lease and an Observer.
package redelivery
