// Package atexit runs cleanups last first, for the harnesses of bench/:
// os.Exit skips deferred calls, and a failed run must not leave Caddy,
// Vault, Redis or a temporary directory behind. A *Cleanups stands in for
// the testing.TB the test servers (fakenextcloud, devvault) take.
package atexit

// Cleanups are the functions to run at exit, in the order they were
// added, reversed.
type Cleanups []func()

// Cleanup adds f.
func (c *Cleanups) Cleanup(f func()) { *c = append(*c, f) }

// Run runs and forgets every cleanup, the last added first.
func (c *Cleanups) Run() {
	for len(*c) > 0 {
		f := (*c)[len(*c)-1]
		*c = (*c)[:len(*c)-1]
		f()
	}
}
