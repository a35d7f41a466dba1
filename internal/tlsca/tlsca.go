package caddyapppw

import (
	"crypto/x509"
	"fmt"
	"os"
)

// systemPoolWithCA returns the system's trusted CAs plus those of a PEM
// file: for a Nextcloud or a Redis signed by a private CA. Errors name the
// ca_cert option.
func systemPoolWithCA(file string) (*x509.CertPool, error) {
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
