package ratelimit

import "testing"

func TestLimiterKeyFoldsCase(t *testing.T) {
	if AccountKey("Alice") != AccountKey("alice") || AccountKey("bob") != "bob" {
		t.Fatal("limiter keys differ by case")
	}
}

// TestAccountKeyFoldsAsNextcloud: Nextcloud compares login names with
// mb_strtolower, full Unicode (PHP 8.3 also lowers a final capital sigma
// to "ς"). Every pair that comparison makes one account is one key here,
// or an account has two budgets: "Änne" and "änne" had, when only ASCII
// was folded.
func TestAccountKeyFoldsAsNextcloud(t *testing.T) {
	for _, pair := range [][2]string{
		{"ÄNNE@Example.COM", "änne@example.com"},
		{"Änne", "änne"},
		{"ΟΔΟΣ", "οδος"}, // final sigma: mb_strtolower gives "ς" (PHP 8.3)
		{"ΟΔΟΣ", "οδοσ"}, // and "σ" before PHP 8.3
		{"ΣΑΣ", "σας"},
		{"İstanbul", "i\u0307stanbul"}, // full lower mapping: "i" and a combining dot
		{"ẞ", "ß"},
		{"Ǆemal", "ǆemal"},
		{"\u212Aelvin", "kelvin"}, // KELVIN SIGN lowers to "k"
		{"\u2126", "ω"},           // OHM SIGN lowers to omega
		{"ДМИТРИЙ", "дмитрий"},
		{"ＡＢＣ", "ａｂｃ"}, // fullwidth letters have case too
	} {
		if a, b := AccountKey(pair[0]), AccountKey(pair[1]); a != b {
			t.Errorf("AccountKey(%q) = %q, AccountKey(%q) = %q: one account to Nextcloud, two budgets", pair[0], a, pair[1], b)
		}
	}
	for _, name := range []string{"ΟΔΟΣ", "İstanbul", "Straße", "alice", "ÄNNE", "\u212A"} {
		if k := AccountKey(name); AccountKey(k) != k {
			t.Errorf("AccountKey(%q) = %q is not its own key (%q)", name, k, AccountKey(k))
		}
	}
	// Invalid UTF-8 is no login name Nextcloud knows, but must still be
	// one key of its own, unchanged in its ASCII-free bytes.
	if AccountKey("a\xffB") != AccountKey("A\xffb") {
		t.Errorf("invalid UTF-8 folded inconsistently")
	}
}

// TestAccountKeyASCIIAllocatesNothing: the common name costs no
// allocation when it is lower case already.
func TestAccountKeyASCIIAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = AccountKey("alice@example.com") }); n != 0 {
		t.Errorf("AccountKey allocates %v times for a lower-case ASCII name", n)
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
