# The caddy-apppw module's Vault policy for a KV v1 mount at "secret"
# (kv_version 1): no versions, so plain create/read/update/delete.
path "secret/nextcloud-mcp/app-passwords/*" {
  capabilities = ["create", "read", "update", "delete"]
}

# The sweep and `caddy app-password list` list the stored users (KV LIST
# of the prefix; the path of a LIST ends in "/"). The sweep's lease, when
# it is kept in Vault, is the secret nextcloud-mcp/app-passwords/_sweep/lease,
# which the path above covers.
path "secret/nextcloud-mcp/app-passwords/" {
  capabilities = ["list"]
}
