package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	log "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/physical/raft"
	"github.com/hashicorp/vault/sdk/physical"
	"github.com/hashicorp/vault/vault"
)

// raftOptions are the flags of the integrated-storage mode: one node of a
// Vault cluster, each node its own devvault process, as `vault server`
// with `storage "raft"` runs it.
type raftOptions struct {
	dir         string // the node's raft directory
	nodeID      string
	clusterAddr string // host:port of the cluster listener (raft, forwarding)
	join        string // API address of a node to join; "" for the first node
	keyFile     string // the cluster's unseal key: written at init, read to unseal
	multiplier  string // raft performance_multiplier (1 = fastest elections)
}

func (o raftOptions) enabled() bool { return o.dir != "" }

// backend is Vault's integrated storage on o.dir. Vault's server does the
// same for `storage "raft"`; the backend is also the HA backend, so the
// raft leader is the active node.
func (o raftOptions) backend(logger log.Logger) (physical.Backend, error) {
	if o.clusterAddr == "" {
		return nil, errors.New("-raft-dir needs -cluster-addr")
	}
	if o.keyFile == "" {
		return nil, errors.New("-raft-dir needs -unseal-key-file")
	}
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return nil, err
	}
	id := o.nodeID
	if id == "" {
		id = filepath.Base(o.dir)
	}
	return raft.NewRaftBackend(map[string]string{
		"path":                   o.dir,
		"node_id":                id,
		"performance_multiplier": o.multiplier,
	}, logger.Named("storage.raft"))
}

// startRaft brings this node into the cluster: the first node initialises
// (which bootstraps raft), unseals and, once it is the active node, creates
// the root token and the KV mount; a new node joins the node at o.join and
// unseals with the cluster's key; a node that has raft data already (a
// restart) only unseals. It returns once the node is unsealed.
func startRaft(ctx context.Context, core *vault.Core, o raftOptions, rootToken, kvVersion string) error {
	inited, err := core.InitializedLocally(ctx)
	if err != nil {
		return err
	}
	switch {
	case inited:
		if err := unsealFromFile(core, o.keyFile); err != nil {
			return err
		}
	case o.join != "":
		if _, err := core.JoinRaftCluster(ctx, []*raft.LeaderJoinInfo{{LeaderAPIAddr: o.join, Retry: false}}, false); err != nil {
			return fmt.Errorf("join %s: %w", o.join, err)
		}
		if err := unsealFromFile(core, o.keyFile); err != nil {
			return err
		}
	default:
		init, err := core.Initialize(ctx, &vault.InitParams{
			BarrierConfig: &vault.SealConfig{SecretShares: 1, SecretThreshold: 1, Name: "shamir"},
		})
		if err != nil {
			return fmt.Errorf("initialize: %w", err)
		}
		if err := os.WriteFile(o.keyFile, init.SecretShares[0], 0o600); err != nil {
			return err
		}
		if ok, err := core.Unseal(init.SecretShares[0]); err != nil || !ok {
			return fmt.Errorf("unseal: %v", err)
		}
		if err := waitFor(func() bool { standby, _ := core.Standby(); return !standby }); err != nil {
			return fmt.Errorf("becoming the active node: %w", err)
		}
		return setupDev(ctx, core, init.RootToken, rootToken, kvVersion)
	}
	// A joining node unseals in the background once the keyring has
	// streamed in from the leader.
	if err := waitFor(func() bool { return !core.Sealed() }); err != nil {
		return fmt.Errorf("unsealing: %w", err)
	}
	return nil
}

func unsealFromFile(core *vault.Core, keyFile string) error {
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	if _, err := core.Unseal(key); err != nil {
		return fmt.Errorf("unseal: %w", err)
	}
	return nil
}

// waitFor polls cond for up to two minutes: Vault's core offers no
// notification for becoming active or unsealed.
func waitFor(cond func() bool) error {
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out after 2m")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
