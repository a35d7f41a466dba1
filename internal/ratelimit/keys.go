package ratelimit

import (
	"net/netip"

	"golang.org/x/text/cases"
)

// AccountKey is the key an account name is limited under: the path's user
// id, a login name, or a uid Nextcloud answered with.
//
// Nextcloud compares login names with PHP's mb_strtolower, full Unicode
// lower-casing ("Änne" and "änne" are one account, and since PHP 8.3 a
// final capital sigma lowers to "ς"), so every two names that comparison
// makes one account must share one key here, or the account has a budget
// per spelling. The key is the name's full Unicode case folding: it
// merges every pair mb_strtolower does, under either sigma rule, and at
// most a few pairs it does not ("ß" and "ss"), which can only share a
// budget, never split one. ASCII names, nearly all, take a path that does
// not allocate when they are lower case already. Folding at most triples a
// name's length: the API bounds login names at 256 characters, so keys
// stay bounded.
func AccountKey(name string) string {
	upper := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 0x80 {
			// A Caser keeps state: one per call.
			return cases.Fold().String(name)
		}
		upper = upper || 'A' <= c && c <= 'Z'
	}
	if !upper {
		return name
	}
	b := []byte(name)
	for j := range b {
		if 'A' <= b[j] && b[j] <= 'Z' {
			b[j] += 'a' - 'A'
		}
	}
	return string(b)
}

// AddressKey is the per-address limit's key for a client IP: an IPv4
// address as is, an IPv6 address by its /64, the block one subscriber
// usually holds whole (keying single IPv6 addresses would give one client
// 2^64 budgets).
func AddressKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a.String()
	}
	return p.String()
}
