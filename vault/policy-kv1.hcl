# The caddy-apppw module's Vault policy for a KV v1 mount at "secret"
# (kv_version 1): no versions, so plain create/read/update/delete.
path "secret/nextcloud-mcp/app-passwords/*" {
  capabilities = ["create", "read", "update", "delete"]
}
