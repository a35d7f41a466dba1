package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The deployment tests run containers with Debian's podman and buildah
// (scripts/test installs them), as root, with testdata/containers.conf
// unless CONTAINERS_CONF names another.

// containerEnv is this process's environment with CONTAINERS_CONF set.
func containerEnv(t *testing.T) []string {
	t.Helper()
	if os.Getenv("CONTAINERS_CONF") != "" {
		return os.Environ()
	}
	conf, err := filepath.Abs("testdata/containers.conf")
	if err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "CONTAINERS_CONF="+conf)
}

// needsContainers skips under -short and fails when the tools are missing:
// the full suite installs them.
func needsContainers(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs containers with podman: the full suite (scripts/test) runs it")
	}
	for _, tool := range []string{"podman", "buildah"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: scripts/test installs Debian's podman, buildah, runc, slirp4netns and catatonit", tool)
		}
	}
}

// tool runs a command (podman, buildah, a script) in dir with the
// containers' environment and returns its standard output; it fails the
// test on a non-zero exit, with what the command printed.
func tool(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	out, err := toolErr(t, dir, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func toolErr(t *testing.T, dir, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, containerEnv(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

var (
	imageOnce sync.Once
	imageName string
	imageLog  string
	imageErr  error
)

// caddyImage is the image scripts/build-image makes: $CADDY_APPPW_IMAGE
// when scripts/test built it already, or built here once per test binary.
func caddyImage(t *testing.T) string {
	t.Helper()
	imageOnce.Do(func() {
		if name := os.Getenv("CADDY_APPPW_IMAGE"); name != "" {
			imageName = name
			return
		}
		imageName = "localhost/caddy-apppw:e2e"
		imageLog, imageErr = toolErr(t, "..", "scripts/build-image", imageName)
	})
	if imageErr != nil {
		t.Fatalf("scripts/build-image: %v\n%s", imageErr, imageLog)
	}
	return imageName
}

var (
	doubleOnce sync.Once
	doubleErr  error
)

const doubleImage = "localhost/nextcloud-mcp-server-double:e2e"

// mcpDoubleImage builds the MCP server's stand-in image: a static build of
// cmd/nextcloud-mcp-server-double at the real image's entrypoint path, on
// an empty root, running as the real image's uid 1000. Nothing is pulled.
func mcpDoubleImage(t *testing.T) string {
	t.Helper()
	doubleOnce.Do(func() {
		dir := t.TempDir()
		bin := filepath.Join(dir, "nextcloud-mcp-server")
		build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/nextcloud-mcp-server-double")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			doubleErr = &buildError{err, string(out)}
			return
		}
		c, err := toolErr(t, "", "buildah", "from", "scratch")
		if err != nil {
			doubleErr = &buildError{err, c}
			return
		}
		c = strings.TrimSpace(c)
		defer func() { _, _ = toolErr(t, "", "buildah", "rm", c) }()
		// The image this name had before goes once the new one has it.
		if previous, err := toolErr(t, "", "buildah", "images", "--quiet", "--noheading", doubleImage); err == nil && strings.TrimSpace(previous) != "" {
			defer func() { _, _ = toolErr(t, "", "buildah", "rmi", strings.TrimSpace(previous)) }()
		}
		for _, step := range [][]string{
			{"copy", "--chown", "0:0", "--chmod", "0755", c, bin, "/app/.venv/bin/nextcloud-mcp-server"},
			{"config", "--user", "1000:1000", "--entrypoint", `["/app/.venv/bin/nextcloud-mcp-server", "run", "--host", "0.0.0.0"]`, c},
			{"commit", "--quiet", c, doubleImage},
		} {
			if out, err := toolErr(t, "", "buildah", step...); err != nil {
				doubleErr = &buildError{err, out}
				return
			}
		}
	})
	if doubleErr != nil {
		t.Fatalf("building the MCP server double's image: %v", doubleErr)
	}
	return doubleImage
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }
