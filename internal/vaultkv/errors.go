package vaultkv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/hashicorp/vault/api"
)

// vaultError prefixes a Vault failure with its kind, so the log says at a
// glance why storage is unavailable: "permission denied", "sealed",
// "unavailable", "timeout" or "unreachable". Store sentinels pass through
// unchanged. Vault's error texts carry paths and reasons, never the token
// or the data written.
func vaultError(err error) error {
	if err == nil || errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound) {
		return err
	}
	return fmt.Errorf("%s: %w", vaultErrorKind(err), err)
}

func vaultErrorKind(err error) string {
	var re *api.ResponseError
	if errors.As(err, &re) {
		switch {
		case re.StatusCode == http.StatusForbidden:
			return "permission denied"
		case re.StatusCode == http.StatusServiceUnavailable && strings.Contains(strings.Join(re.Errors, " "), "sealed"):
			return "sealed"
		case re.StatusCode >= 500:
			return "unavailable"
		}
		return fmt.Sprintf("vault answered %d", re.StatusCode)
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED), errors.As(err, new(*net.OpError)), errors.As(err, new(*net.DNSError)):
		return "unreachable"
	}
	return "error"
}
