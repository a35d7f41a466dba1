package ratelimit

import "testing"

func TestLimiterKeyFoldsCase(t *testing.T) {
	if AccountKey("Alice") != AccountKey("alice") || AccountKey("bob") != "bob" {
		t.Fatal("limiter keys differ by case")
	}
	// Only ASCII is folded, as Nextcloud compares logins.
	if got := AccountKey("ÄNNE@Example.COM"); got != "Änne@example.com" {
		t.Fatalf("limiterKey = %q", got)
	}
}

func TestAddressKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":               "203.0.113.7",
		"::ffff:203.0.113.7":        "203.0.113.7",
		"2001:db8:1:2:3:4:5:6":      "2001:db8:1:2::/64",
		"2001:db8:1:2::ffff":        "2001:db8:1:2::/64",
		"fe80::1%eth0":              "fe80::/64",
		"not an address":            "not an address",
		"2001:db8:1:3:3:4:5:6":      "2001:db8:1:3::/64",
		"::1":                       "::/64",
		"2001:0DB8:0001:0002::0001": "2001:db8:1:2::/64",
	} {
		if got := AddressKey(in); got != want {
			t.Errorf("AddressKey(%q) = %q, want %q", in, got, want)
		}
	}
}
