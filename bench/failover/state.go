package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// vaultState is each node's health and the raft configuration.
func vaultState(s *stack) []string {
	var lines []string
	for i, n := range s.vault.Nodes {
		h, err := n.Root.Sys().Health()
		switch {
		case err != nil:
			lines = append(lines, fmt.Sprintf("node%d %s down", i+1, n.Addr))
		case h.Standby:
			lines = append(lines, fmt.Sprintf("node%d %s standby", i+1, n.Addr))
		default:
			lines = append(lines, fmt.Sprintf("node%d %s active", i+1, n.Addr))
		}
	}
	if a := s.vault.Active(); a != nil {
		sec, err := a.Root.Logical().Read("sys/storage/raft/configuration")
		if err == nil && sec != nil {
			cfg, _ := sec.Data["config"].(map[string]any)
			servers, _ := cfg["servers"].([]any)
			var parts []string
			for _, sv := range servers {
				m, _ := sv.(map[string]any)
				role := "follower"
				if m["leader"] == true {
					role = "leader"
				}
				parts = append(parts, fmt.Sprintf("%v %s", m["node_id"], role))
			}
			lines = append(lines, "raft configuration: "+strings.Join(parts, ", ")+
				" (the killed node stays a voter: quorum 2 of 3, no further node may fail until it is back)")
		}
	}
	return lines
}

// redisState is the primary the sentinels name and its replication.
func redisState(s *stack) []string {
	primary, err := s.redis.PrimaryAddr()
	if err != nil {
		return []string{err.Error()}
	}
	rc := redis.NewClient(&redis.Options{Addr: primary})
	defer rc.Close()
	info, err := rc.Info(context.Background(), "replication").Result()
	if err != nil {
		return []string{"primary " + primary + ": " + err.Error()}
	}
	var role, replicas string
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "role:"); ok {
			role = v
		}
		if v, ok := strings.CutPrefix(l, "connected_slaves:"); ok {
			replicas = v
		}
	}
	return []string{fmt.Sprintf("primary %s (role %s, %s replicas connected: the old primary is down)", primary, role, replicas)}
}
