package main

import (
	"fmt"

	"github.com/fernet/fernet-go"
)

// loadKey reads the MCP server's Fernet key from the environment variable
// name, never from a flag, so it stays out of shell history and process
// listings. Its errors never show the value.
func loadKey(getenv func(string) string, name string) (*fernet.Key, error) {
	v := getenv(name)
	if v == "" {
		return nil, fmt.Errorf("%s is not set: export the MCP server's TOKEN_ENCRYPTION_KEY under that name", name)
	}
	k, err := fernet.DecodeKey(v)
	if err != nil {
		return nil, fmt.Errorf("%s is not a Fernet key (base64url of 32 bytes, as Fernet.generate_key() makes it)", name)
	}
	return k, nil
}

// decrypt opens a Fernet token the MCP server wrote. No TTL: the tokens are
// as old as each user's last provisioning. Nil when the token does not
// verify (wrong key, corrupt or truncated token).
func decrypt(token []byte, k *fernet.Key) []byte {
	return fernet.VerifyAndDecrypt(token, 0, []*fernet.Key{k})
}
