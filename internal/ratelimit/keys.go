package ratelimit

import "net/netip"

// AccountKey is the key an account name is limited under: the path's user
// id, a login name, or a uid Nextcloud answered with. Nextcloud matches
// logins without regard to ASCII case, so "Alice" and "alice" are one
// account to it and share one count here. Only ASCII is folded, as
// Nextcloud does.
func AccountKey(name string) string {
	for i := 0; i < len(name); i++ {
		if 'A' <= name[i] && name[i] <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
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
