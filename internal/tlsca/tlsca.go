// Package tlsca builds the CA pools of the module's TLS clients. It is a
// package of its own because two collaborators need the same answer to
// "trust the system and this PEM file": the Nextcloud client and the
// Redis client of the shared rate limit. (Vault's client reads its CA
// options through the Vault library, which has its own loader.)
package tlsca

import (
	"crypto/x509"
	"fmt"
	"os"
)

// SystemPoolWithCA returns the system's trusted CAs plus those of a PEM
// file: for a Nextcloud or a Redis signed by a private CA. Adding to the
// system pool rather than replacing it keeps a public CA working when an
// operator sets ca_cert for a proxy in front. Errors name the ca_cert
// option, which is what the operator wrote.
func SystemPoolWithCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ca_cert: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_cert: %s holds no PEM certificate", file)
	}
	return pool, nil
}
