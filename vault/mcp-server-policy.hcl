# The Nextcloud MCP server's Vault policy, on the default layout: it lists
# the provisioned users and reads their secrets, nothing more.
#
#   vault policy write nextcloud-mcp vault/mcp-server-policy.hcl

# KV LIST secret/metadata/nextcloud-mcp/app-passwords/ (the glob also
# matches the folder itself).
path "secret/metadata/nextcloud-mcp/app-passwords/*" {
  capabilities = ["list"]
}

# Read one user's secret.
path "secret/data/nextcloud-mcp/app-passwords/*" {
  capabilities = ["read"]
}
