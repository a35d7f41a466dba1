package e2e

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// officialCaddyImageMB is the size documented for the official caddy
// image, about 50 MB. There is no registry here to measure it: the README
// compares with this documented figure.
const officialCaddyImageMB = 50

// TestDeployImage checks the image scripts/build-image makes: its Caddy
// (version, the module, Caddyfile.example validates, from the image's own
// path and mounted from the checkout), its user, and a root file system
// that holds only what Caddy needs, owned by root but for /config and
// /data.
func TestDeployImage(t *testing.T) {
	needsContainers(t)
	img := caddyImage(t)

	version := tool(t, "", "podman", "run", "--rm", "--read-only", img, "caddy", "version")
	if !strings.HasPrefix(version, "v2.11.9") {
		t.Fatalf("caddy version in the image: %q, want xcaddy.json's v2.11.9", version)
	}
	if modules := tool(t, "", "podman", "run", "--rm", "--read-only", img, "caddy", "list-modules"); !hasLine(modules, appPasswordModule) {
		t.Fatalf("caddy list-modules in the image has no %s:\n%s", appPasswordModule, modules)
	}
	example, err := filepath.Abs("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"run", "--rm", "--read-only", img, "caddy", "validate", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"},
		{"run", "--rm", "--read-only", "-v", example + ":/etc/caddy/Caddyfile:ro", "-e", "VAULT_ADDR=https://vault.example.com:8200",
			"-e", "NEXTCLOUD_URL=https://cloud.example.com", img, "caddy", "validate", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"},
	} {
		out, err := toolErr(t, "", "podman", args...)
		if err != nil || !strings.Contains(out, "Valid configuration") {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	user := strings.TrimSpace(tool(t, "", "podman", "image", "inspect", "--format", "{{.Config.User}}", img))
	if user != "65532:65532" {
		t.Fatalf("the image runs as %q, want 65532:65532", user)
	}

	// The root file system, read from the image itself.
	root := strings.TrimSpace(tool(t, "", "podman", "image", "mount", img))
	t.Cleanup(func() { _, _ = toolErr(t, "", "podman", "image", "unmount", img) })
	var files []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		owner := strconv.Itoa(int(st.Uid)) + ":" + strconv.Itoa(int(st.Gid))
		files = append(files, rel+" "+info.Mode().String()+" "+owner)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"config drwxr-x--- 65532:65532",
		"data drwxr-x--- 65532:65532",
		"etc drwxr-xr-x 0:0",
		"etc/caddy drwxr-xr-x 0:0",
		"etc/caddy/Caddyfile -rw-r--r-- 0:0",
		"etc/group -rw-r--r-- 0:0",
		"etc/nsswitch.conf -rw-r--r-- 0:0",
		"etc/passwd -rw-r--r-- 0:0",
		"etc/ssl drwxr-xr-x 0:0",
		"etc/ssl/certs drwxr-xr-x 0:0",
		"etc/ssl/certs/ca-certificates.crt -rw-r--r-- 0:0",
		"srv drwxr-xr-x 0:0",
		"tmp dtrwxrwxrwx 0:0",
		"usr drwxr-xr-x 0:0",
		"usr/bin drwxr-xr-x 0:0",
		"usr/bin/caddy -rwxr-xr-x 0:0",
	}
	if !slices.Equal(files, want) {
		t.Fatalf("the image's files:\n  %s\nwant:\n  %s", strings.Join(files, "\n  "), strings.Join(want, "\n  "))
	}
	example2, _ := os.ReadFile(example)
	inImage, _ := os.ReadFile(filepath.Join(root, "etc/caddy/Caddyfile"))
	if string(example2) != string(inImage) {
		t.Fatal("the image's /etc/caddy/Caddyfile is not Caddyfile.example")
	}

	size, err := strconv.ParseInt(strings.TrimSpace(tool(t, "", "podman", "image", "inspect", "--format", "{{.Size}}", img)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s: %.1f MB uncompressed (the official caddy image: about %d MB, the documented figure)", img, float64(size)/1e6, officialCaddyImageMB)
}

// TestDeployContainerfile keeps deploy/Containerfile, which needs a
// registry and so is not built here, on the recipe scripts/build-image
// builds from: xcaddy.json's Caddy version and plugin, the same Caddyfile,
// user and ports.
func TestDeployContainerfile(t *testing.T) {
	data, err := os.ReadFile("../deploy/Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	file := string(data)
	recipeData, err := os.ReadFile("../xcaddy.json")
	if err != nil {
		t.Fatal(err)
	}
	var recipe struct {
		CaddyVersion string `json:"caddy_version"`
		Plugins      []struct {
			ModulePath string `json:"module_path"`
			Version    string `json:"version"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(recipeData, &recipe); err != nil || len(recipe.Plugins) != 1 {
		t.Fatalf("xcaddy.json: %v", err)
	}
	for _, want := range []string{
		"ARG CADDY_VERSION=" + strings.TrimPrefix(recipe.CaddyVersion, "v") + "\n",
		"FROM docker.io/library/caddy:${CADDY_VERSION}-builder AS builder\n",
		"RUN xcaddy build v${CADDY_VERSION}",
		"--with " + recipe.Plugins[0].ModulePath + "@" + recipe.Plugins[0].Version + "=/src/caddy-apppw",
		"FROM docker.io/library/caddy:${CADDY_VERSION}\n",
		"COPY --from=builder /usr/bin/caddy /usr/bin/caddy\n",
		"COPY Caddyfile.example /etc/caddy/Caddyfile\n",
		"USER 65532:65532\n",
		"EXPOSE 8080 2019\n",
	} {
		if !strings.Contains(file, want) {
			t.Errorf("deploy/Containerfile has no %q", strings.TrimSpace(want))
		}
	}
}
