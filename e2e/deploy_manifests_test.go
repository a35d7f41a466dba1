package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// TestDeployManifests decodes every manifest of deploy/kubernetes/ and the
// Helm values' pod parts strictly into the Kubernetes API types they name
// (k8s.io/api at the version go.mod pins): an unknown or misplaced field,
// a wrong type or an unknown kind fails. It also holds the manifests to
// what the README promises of them.
func TestDeployManifests(t *testing.T) {
	kinds := map[string]func() any{
		"v1/ServiceAccount":                  func() any { return &corev1.ServiceAccount{} },
		"v1/ConfigMap":                       func() any { return &corev1.ConfigMap{} },
		"v1/Service":                         func() any { return &corev1.Service{} },
		"apps/v1/Deployment":                 func() any { return &appsv1.Deployment{} },
		"networking.k8s.io/v1/NetworkPolicy": func() any { return &networkingv1.NetworkPolicy{} },
	}
	files, err := filepath.Glob("../deploy/kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	objects := map[string]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---")) {
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &head); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			newObj, ok := kinds[head.APIVersion+"/"+head.Kind]
			if !ok {
				t.Fatalf("%s document %d: %s %s is not a kind this test knows", f, i, head.APIVersion, head.Kind)
			}
			obj := newObj()
			if err := decodeStrict(doc, obj); err != nil {
				t.Fatalf("%s document %d (%s): %v", f, i, head.Kind, err)
			}
			objects[head.Kind] = obj
		}
	}
	for _, k := range []string{"ServiceAccount", "ConfigMap", "Service", "Deployment", "NetworkPolicy"} {
		if objects[k] == nil {
			t.Fatalf("deploy/kubernetes has no %s", k)
		}
	}

	dep := objects["Deployment"].(*appsv1.Deployment)
	pod := dep.Spec.Template.Spec
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken || pod.ServiceAccountName != objects["ServiceAccount"].(*corev1.ServiceAccount).Name {
		t.Fatal("the pod must run as the ServiceAccount of serviceaccount.yaml without an API token")
	}
	containers := map[string]corev1.Container{}
	for _, c := range pod.Containers {
		containers[c.Name] = c
		checkHardened(t, "container "+c.Name, c)
	}
	mcpServer, caddy := containers["nextcloud-mcp"], containers["caddy"]
	if cmd := strings.Join(mcpServer.Command, " "); !strings.Contains(cmd, "--host 127.0.0.1") {
		t.Fatalf("the MCP server's command %q does not bind it to the loopback", cmd)
	}
	svc := objects["Service"].(*corev1.Service)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "http" || containerPort(caddy, "http") != 8080 {
		t.Fatalf("the Service must expose Caddy's port only: %+v", svc.Spec.Ports)
	}
	if caddy.ReadinessProbe == nil || caddy.LivenessProbe == nil {
		t.Fatal("Caddy needs a readiness and a liveness probe")
	}
	np := objects["NetworkPolicy"].(*networkingv1.NetworkPolicy)
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port.IntValue() == 8000 {
				t.Fatal("the NetworkPolicy lets the MCP server's port 8000 in")
			}
		}
	}
	if cm := objects["ConfigMap"].(*corev1.ConfigMap); !strings.Contains(cm.Data["Caddyfile"], "token_path /var/run/secrets/caddy-apppw/vault-token") {
		t.Fatal("the Caddyfile does not log in with the projected token")
	}

	// The Helm values: the sidecar is a restartable init container.
	data, err := os.ReadFile("../deploy/helm/values-caddy-sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		InitContainers []corev1.Container        `json:"initContainers"`
		Volumes        []corev1.Volume           `json:"volumes"`
		PodSecurity    corev1.PodSecurityContext `json:"podSecurityContext"`
		MCP            struct {
			ExtraArgs []string `json:"extraArgs"`
		} `json:"mcp"`
		ServiceAccount struct {
			Create    bool   `json:"create"`
			Automount bool   `json:"automount"`
			Name      string `json:"name"`
		} `json:"serviceAccount"`
		PodAnnotations map[string]string `json:"podAnnotations"`
	}
	if err := decodeStrict(data, &values); err != nil {
		t.Fatalf("deploy/helm/values-caddy-sidecar.yaml: %v", err)
	}
	if len(values.InitContainers) != 1 || values.InitContainers[0].RestartPolicy == nil || *values.InitContainers[0].RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Fatal("the Helm values must add Caddy as a native sidecar (restartPolicy: Always)")
	}
	checkHardened(t, "the Helm sidecar", values.InitContainers[0])
	if fmt.Sprint(values.MCP.ExtraArgs) != "[--host 127.0.0.1 --port 8001]" {
		t.Fatalf("the Helm values must move the MCP server to the loopback: %v", values.MCP.ExtraArgs)
	}
}

// decodeStrict decodes YAML as the API server decodes a manifest: field
// names case-sensitive, unknown and duplicate fields refused (encoding/json
// alone would take readOnlyRootFileSystem for readOnlyRootFilesystem).
func decodeStrict(doc []byte, v any) error {
	data, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(data, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func checkHardened(t *testing.T, what string, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil || fmt.Sprint(sc.Capabilities.Drop) != "[ALL]" {
		t.Fatalf("%s: want non-root, a read-only root, no privilege escalation, every capability dropped", what)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Fatalf("%s: want CPU and memory requests and a memory limit", what)
	}
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// TestDeployCompose holds deploy/compose/compose.yaml to its promise (no
// Compose runs here): both services in the multi-user-basic profile, the
// MCP server in Caddy's network namespace on its loopback, and Caddy's
// port the only one published, on 127.0.0.1.
func TestDeployCompose(t *testing.T) {
	data, err := os.ReadFile("../deploy/compose/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type service struct {
		Profiles    []string          `json:"profiles"`
		Image       string            `json:"image"`
		NetworkMode string            `json:"network_mode"`
		Entrypoint  []string          `json:"entrypoint"`
		Command     []string          `json:"command"`
		Ports       []string          `json:"ports"`
		Environment map[string]string `json:"environment"`
		ReadOnly    bool              `json:"read_only"`
		CapDrop     []string          `json:"cap_drop"`
	}
	var compose struct {
		Services map[string]service `json:"services"`
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatal(err)
	}
	caddy, mcpServer := compose.Services["caddy-apppw"], compose.Services["mcp-multi-user-basic"]
	for name, s := range map[string]service{"caddy-apppw": caddy, "mcp-multi-user-basic": mcpServer} {
		if fmt.Sprint(s.Profiles) != "[multi-user-basic]" {
			t.Fatalf("%s: profiles %v, want [multi-user-basic]", name, s.Profiles)
		}
	}
	if mcpServer.NetworkMode != "service:caddy-apppw" || len(mcpServer.Ports) != 0 || !strings.Contains(strings.Join(mcpServer.Entrypoint, " "), "--host 127.0.0.1") {
		t.Fatalf("the MCP server must share Caddy's network and listen on its loopback, unpublished: %+v", mcpServer)
	}
	if fmt.Sprint(caddy.Ports) != "[127.0.0.1:8000:8080]" || caddy.Environment["MCP_UPSTREAM"] != "127.0.0.1:8000" || !caddy.ReadOnly || fmt.Sprint(caddy.CapDrop) != "[ALL]" {
		t.Fatalf("Caddy: ports %v, MCP_UPSTREAM %q, read-only %v, cap_drop %v", caddy.Ports, caddy.Environment["MCP_UPSTREAM"], caddy.ReadOnly, caddy.CapDrop)
	}
}
