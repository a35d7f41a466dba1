package devvault

import (
	"testing"
	"time"
)

// Three devvault processes make one Vault cluster on integrated storage:
// a standby forwards a write to the active node, the active node's death
// leaves the data with the new one, and the killed node comes back as a
// standby.
func TestClusterElectsAndForwards(t *testing.T) {
	c := StartCluster(t, 3)
	first, err := c.WaitActive(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if first != c.Nodes[0] {
		t.Fatalf("active %s, want the first node %s", first.Addr, c.Nodes[0].Addr)
	}
	standby := c.Nodes[1]
	if _, err := standby.Root.Logical().Write("secret/data/cluster", map[string]any{"data": map[string]any{"v": "1"}}); err != nil {
		t.Fatalf("write through a standby: %v", err)
	}

	first.Kill()
	next, err := c.WaitActive(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := next.Root.Logical().Read("secret/data/cluster")
	if err != nil || sec == nil || sec.Data["data"].(map[string]any)["v"] != "1" {
		t.Fatalf("after the election %s reads %v (%v)", next.Addr, sec, err)
	}

	if err := first.Restart(); err != nil {
		t.Fatal(err)
	}
	if h, err := first.Root.Sys().Health(); err != nil || h.Sealed || !h.Standby {
		t.Fatalf("the restarted node: %+v (%v)", h, err)
	}
}
