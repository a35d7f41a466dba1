# The caddy-apppw module's Vault policy, on the default layout: KV v2 at
# mount "secret", path_prefix "nextcloud-mcp/app-passwords". Exactly the
# capabilities the module uses; the tests run the whole API under it.
#
#   vault policy write caddy-apppw vault/policy.hcl
#
# Token renewal and lookup (auth/token/renew-self, lookup-self) come from
# Vault's "default" policy, which tokens carry unless created without it.

# Every route reads the user's record; the first POST creates it
# (check-and-set 0); a re-provisioning or a PATCH updates it
# (check-and-set <version>).
path "secret/data/nextcloud-mcp/app-passwords/*" {
  capabilities = ["create", "read", "update"]
}

# A re-provisioning or a PATCH destroys the versions it replaced, so no
# older password stays readable.
path "secret/destroy/nextcloud-mcp/app-passwords/*" {
  capabilities = ["update"]
}

# DELETE removes the metadata, and with it every version.
path "secret/metadata/nextcloud-mcp/app-passwords/*" {
  capabilities = ["delete"]
}

# The sweep and `caddy app-password list` list the stored users (KV LIST
# of the prefix's metadata; the path of a LIST ends in "/"). The sweep's
# lease, when it is kept in Vault, is the secret
# nextcloud-mcp/app-passwords/_sweep/lease, which the data path above
# covers.
path "secret/metadata/nextcloud-mcp/app-passwords/" {
  capabilities = ["list"]
}
