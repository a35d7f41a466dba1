// Command devvault runs HashiCorp Vault's real core with in-memory (or
// file) storage, the way `vault server -dev` does, for the tests and local
// runs of caddy-apppw.
//
// The full `vault` CLI does not build from the module proxy (Vault's
// in-tree sdk sits between the published sdk tags, so either the identity
// store or transit fails to compile), so this embeds only the parts the
// project needs: the core, the HTTP API, the KV secrets engine and the
// AppRole and Kubernetes auth methods. It lives in its own Go module so
// that the product's go.mod never carries Vault's server.
//
// Usage:
//
//	devvault -addr 127.0.0.1:0 -root-token root [-kv-version 2]
//	         [-tls-cert f -tls-key f [-tls-client-ca f]] [-data-dir d]
//	         [-exit-with-stdin]
//	devvault -addr 127.0.0.1:8200 -raft-dir d -cluster-addr 127.0.0.1:8201
//	         -unseal-key-file f [-join http://127.0.0.1:8300] [-node-id n]
//
// Once it serves it prints one line, "VAULT_ADDR=<url>", on stdout, so a
// caller can wait for readiness without polling. SIGTERM or SIGINT stops it.
//
// With -data-dir the storage is a directory and the unseal key is kept in
// it, so a killed and restarted devvault comes back unsealed with the same
// data. That exists for fault-injection tests; it is not a way to keep
// secrets.
//
// With -raft-dir it is one node of a Vault cluster on integrated storage
// (Raft), with the cluster listener, HA and request forwarding of `vault
// server`: the first node initialises and writes the cluster's unseal key
// to -unseal-key-file; the others -join it and unseal with that key; a node
// restarted on its directory unseals and takes its place again. The line
// is printed once the node is unsealed (active or standby).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	log "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/helper/namespace"
	vaulthttp "github.com/hashicorp/vault/http"
	"github.com/hashicorp/vault/internalshared/configutil"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/physical"
	"github.com/hashicorp/vault/sdk/physical/file"
	"github.com/hashicorp/vault/sdk/physical/inmem"
	"github.com/hashicorp/vault/vault"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "devvault:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8200", "listen address (port 0 picks a free port)")
	rootToken := flag.String("root-token", "root", "ID of the root token to create")
	kvVersion := flag.String("kv-version", "2", `KV version of the "secret/" mount ("1", "2", or "" for none)`)
	tlsCert := flag.String("tls-cert", "", "serve TLS with this PEM certificate")
	tlsKey := flag.String("tls-key", "", "PEM private key for -tls-cert")
	clientCA := flag.String("tls-client-ca", "", "require client certificates signed by this PEM CA")
	dataDir := flag.String("data-dir", "", "keep storage and the unseal key in this directory (default: memory)")
	logLevel := flag.String("log-level", "warn", "Vault log level")
	watchStdin := flag.Bool("exit-with-stdin", false, "stop when standard input closes (so a crashed parent leaves no server behind)")
	var ro raftOptions
	flag.StringVar(&ro.dir, "raft-dir", "", "run as a node of a cluster on integrated storage (Raft) kept in this directory")
	flag.StringVar(&ro.nodeID, "node-id", "", "raft node id (default: the -raft-dir's name)")
	flag.StringVar(&ro.clusterAddr, "cluster-addr", "", "host:port of the cluster listener (raft and request forwarding)")
	flag.StringVar(&ro.join, "join", "", "API address of a cluster node to join (first start of a node other than the first)")
	flag.StringVar(&ro.keyFile, "unseal-key-file", "", "the cluster's unseal key: written by the first node, read by the others")
	flag.StringVar(&ro.multiplier, "raft-performance-multiplier", "1", "raft timing multiplier (Vault's default is 5; 1 elects fastest)")
	flag.Parse()

	logger := log.New(&log.LoggerOptions{Name: "devvault", Level: log.LevelFromString(*logLevel), Output: os.Stderr})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	scheme := "http"
	if *tlsCert != "" {
		cfg, err := serverTLS(*tlsCert, *tlsKey, *clientCA)
		if err != nil {
			return err
		}
		ln = tls.NewListener(ln, cfg)
		scheme = "https"
	}
	apiAddr := scheme + "://" + ln.Addr().String()

	var backend physical.Backend
	switch {
	case ro.enabled():
		backend, err = ro.backend(logger)
	case *dataDir != "":
		backend, err = file.NewFileBackend(map[string]string{"path": filepath.Join(*dataDir, "storage")}, logger)
	default:
		backend, err = inmem.NewInmem(nil, logger)
	}
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}

	coreConfig := &vault.CoreConfig{
		Physical:           backend,
		Logger:             logger,
		DisableMlock:       true,
		BuiltinRegistry:    registry{},
		LogicalBackends:    secretsPlugins,
		CredentialBackends: credentialPlugins,
	}
	if ro.enabled() {
		// As `vault server` with storage "raft": the storage is the HA
		// backend, api_addr is where standbys send clients, cluster_addr
		// where they forward requests and raft talks.
		coreConfig.HAPhysical = backend.(physical.HABackend)
		coreConfig.RedirectAddr = apiAddr
		coreConfig.ClusterAddr = "https://" + ro.clusterAddr
	}
	core, err := vault.NewCore(coreConfig)
	if err != nil {
		return fmt.Errorf("core: %w", err)
	}
	defer core.Shutdown()

	// The API serves from the start, as Vault's does: sealed answers
	// 503 until the node is unsealed, and the line below tells callers
	// when it is ready.
	handler := vaulthttp.Handler.Handler(&vault.HandlerProperties{
		Core:           core,
		ListenerConfig: &configutil.Listener{Address: ln.Addr().String()},
	})
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	ctx := namespace.ContextWithNamespace(context.Background(), namespace.RootNamespace)
	if ro.enabled() {
		clusterTCP, err := net.ResolveTCPAddr("tcp", ro.clusterAddr)
		if err != nil {
			return fmt.Errorf("cluster-addr: %w", err)
		}
		// Before the first unseal, as Vault's server does: unsealing
		// starts the cluster listener.
		core.SetClusterListenerAddrs([]*net.TCPAddr{clusterTCP})
		core.SetClusterHandler(vaulthttp.Handler.Handler(&vault.HandlerProperties{
			Core:           core,
			ListenerConfig: &configutil.Listener{DisableJSONLimitParsing: true},
		}))
		if err := startRaft(ctx, core, ro, *rootToken, *kvVersion); err != nil {
			return err
		}
	} else if err := initAndUnseal(ctx, core, *dataDir, *rootToken, *kvVersion); err != nil {
		return err
	}

	fmt.Printf("VAULT_ADDR=%s\n", apiAddr)
	fmt.Fprintln(os.Stderr, "devvault: development server; storage is", storageWord(*dataDir, ro.dir), "and every secret vanishes when it stops")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	if *watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			sig <- syscall.SIGTERM
		}()
	}
	select {
	case <-sig:
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

func storageWord(dataDir, raftDir string) string {
	if raftDir != "" {
		return "raft in " + raftDir
	}
	if dataDir == "" {
		return "in memory"
	}
	return "in " + dataDir
}

// initAndUnseal mirrors enableDev in Vault's command/server.go: one key
// share, a root token with a known ID, and a KV mount at "secret/". With a
// data directory a second start only unseals.
func initAndUnseal(ctx context.Context, core *vault.Core, dataDir, rootToken, kvVersion string) error {
	keyFile := filepath.Join(dataDir, "unseal.key")
	inited, err := core.Initialized(ctx)
	if err != nil {
		return err
	}
	if inited {
		if dataDir == "" {
			return errors.New("memory storage is already initialized")
		}
		key, err := os.ReadFile(keyFile)
		if err != nil {
			return err
		}
		if ok, err := core.Unseal(key); err != nil || !ok {
			return fmt.Errorf("unseal: %v", err)
		}
		return nil
	}

	init, err := core.Initialize(ctx, &vault.InitParams{
		BarrierConfig: &vault.SealConfig{SecretShares: 1, SecretThreshold: 1, Name: "shamir"},
	})
	if err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	if dataDir != "" {
		if err := os.WriteFile(keyFile, init.SecretShares[0], 0o600); err != nil {
			return err
		}
	}
	if ok, err := core.Unseal(init.SecretShares[0]); err != nil || !ok {
		return fmt.Errorf("unseal: %v", err)
	}

	return setupDev(ctx, core, init.RootToken, rootToken, kvVersion)
}

// setupDev replaces the initial root token with one of a known ID and
// mounts KV at "secret/", on the active node.
func setupDev(ctx context.Context, core *vault.Core, initialRoot, rootToken, kvVersion string) error {
	if _, err := request(ctx, core, initialRoot, "auth/token/create", map[string]any{
		"id":                rootToken,
		"policies":          []string{"root"},
		"no_parent":         true,
		"no_default_policy": true,
	}); err != nil {
		return fmt.Errorf("root token: %w", err)
	}
	if _, err := request(ctx, core, rootToken, "auth/token/revoke-orphan", map[string]any{"token": initialRoot}); err != nil {
		return fmt.Errorf("revoke initial root token: %w", err)
	}
	if kvVersion == "" {
		return nil
	}
	_, err := request(ctx, core, rootToken, "sys/mounts/secret", map[string]any{
		"type":    "kv",
		"path":    "secret/",
		"options": map[string]string{"version": kvVersion},
	})
	return err
}

func request(ctx context.Context, core *vault.Core, token, path string, data map[string]any) (*logical.Response, error) {
	resp, err := core.HandleRequest(ctx, &logical.Request{
		Operation:   logical.UpdateOperation,
		ClientToken: token,
		Path:        path,
		Data:        data,
	})
	if err != nil {
		return nil, err
	}
	if resp.IsError() {
		return nil, resp.Error()
	}
	return resp, nil
}

func serverTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", clientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
