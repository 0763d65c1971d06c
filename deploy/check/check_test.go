// Package check validates deploy/kubernetes against the Kubernetes API's
// own Go types (k8s.io/api), decoding strictly: an unknown or misspelt
// field, a wrong type or a malformed quantity fails, as the API server
// would refuse it. It is a module of its own so that loaderd does not
// depend on k8s.io/api; .ci/run runs it.
package check

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// decode reads a manifest strictly into obj.
func decode(t *testing.T, name string, obj any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "kubernetes", name))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(b, []byte("\n---")) > 0 {
		t.Fatalf("%s: one object per file", name)
	}
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// loaderdArgs checks a loaderd container: its flags are ones the command
// takes (given as --name=value) and it gets the S3 credentials from a
// Secret, never inline.
func loaderdArgs(t *testing.T, c corev1.Container, command string, known []string) map[string]string {
	t.Helper()
	if len(c.Args) == 0 || c.Args[0] != command {
		t.Fatalf("container %s: args %v; want %s first", c.Name, c.Args, command)
	}
	flags := map[string]string{}
	for _, a := range c.Args[1:] {
		name, val, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Errorf("container %s: argument %q; want --name=value", c.Name, a)
			continue
		}
		if !slices.Contains(known, name) {
			t.Errorf("container %s: loaderd %s takes no --%s", c.Name, command, name)
		}
		flags[name] = val
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "AWS_") && e.Value != "" {
			t.Errorf("container %s: %s given inline; take it from a Secret", c.Name, e.Name)
		}
	}
	if flags["remote-cache"] != "" && (len(c.EnvFrom) == 0 || c.EnvFrom[0].SecretRef == nil) {
		t.Errorf("container %s: --remote-cache without credentials from a Secret (envFrom)", c.Name)
	}
	return flags
}

// Flags of loaderd's commands that the manifests may use (from --help).
var (
	datasetFlags = []string{"data", "pipeline", "seed", "decoder", "cache-dir", "cache-budget", "workers", "shard-size", "on-error", "log-level", "require-gpu", "remote-cache"}
	serveFlags   = append(slices.Clone(datasetFlags), "listen", "metrics-listen", "pprof", "prefetch-epochs", "max-streams", "auth-token-file", "tls-cert", "tls-key", "tls-client-ca", "ticket-key-file", "drain-timeout")
	precompFlags = append(slices.Clone(datasetFlags), "epochs", "part")
)

func TestPrecomputeJob(t *testing.T) {
	var job batchv1.Job
	decode(t, "precompute-job.yaml", &job)
	if job.APIVersion != "batch/v1" || job.Kind != "Job" {
		t.Fatalf("%s/%s; want batch/v1 Job", job.APIVersion, job.Kind)
	}
	s := job.Spec
	if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion {
		t.Fatal("completionMode is not Indexed")
	}
	if s.Completions == nil || *s.Completions < 1 {
		t.Fatal("no completions")
	}
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyNever && s.Template.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		t.Errorf("restartPolicy %q; a Job needs Never or OnFailure", s.Template.Spec.RestartPolicy)
	}
	cs := s.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%d containers; want 1", len(cs))
	}
	flags := loaderdArgs(t, cs[0], "precompute", precompFlags)
	// --part K/N: K from the completion index, N = completions.
	want := "$(PART)/" + itoa(int(*s.Completions))
	if flags["part"] != want {
		t.Errorf("--part=%s; want %s (N must equal completions)", flags["part"], want)
	}
	found := false
	for _, e := range cs[0].Env {
		if e.Name == "PART" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil &&
			e.ValueFrom.FieldRef.FieldPath == "metadata.annotations['batch.kubernetes.io/job-completion-index']" {
			found = true
		}
	}
	if !found {
		t.Error("PART does not come from the job-completion-index annotation")
	}
	if flags["remote-cache"] == "" || flags["epochs"] == "" || flags["data"] == "" {
		t.Errorf("flags %v; want --data, --epochs and --remote-cache", flags)
	}
}

func TestServeDaemonSet(t *testing.T) {
	var ds appsv1.DaemonSet
	decode(t, "serve-daemonset.yaml", &ds)
	if ds.APIVersion != "apps/v1" || ds.Kind != "DaemonSet" {
		t.Fatalf("%s/%s; want apps/v1 DaemonSet", ds.APIVersion, ds.Kind)
	}
	sel := ds.Spec.Selector
	if sel == nil || len(sel.MatchLabels) == 0 {
		t.Fatal("no selector")
	}
	for k, v := range sel.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("the selector's %s=%s is not on the pod template", k, v)
		}
	}
	cs := ds.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%d containers; want 1", len(cs))
	}
	flags := loaderdArgs(t, cs[0], "serve", serveFlags)
	// Served beyond loopback: it must not be open to all (SPEC §4 auth).
	if !strings.HasPrefix(flags["listen"], "127.") && flags["auth-token-file"] == "" && flags["tls-client-ca"] == "" {
		t.Errorf("--listen=%s with neither --auth-token-file nor --tls-client-ca", flags["listen"])
	}
	mounts := map[string]string{}
	for _, m := range cs[0].VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	vols := map[string]bool{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		vols[v.Name] = true
	}
	for name := range mounts {
		if !vols[name] {
			t.Errorf("volume mount %s has no volume", name)
		}
	}
	for _, f := range []string{"cache-dir", "auth-token-file", "tls-cert", "tls-key"} {
		if p := flags[f]; p != "" && !under(p, mounts) {
			t.Errorf("--%s=%s is on no mounted volume", f, p)
		}
	}
	if g := ds.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g <= 30 {
		t.Error("terminationGracePeriodSeconds must exceed the 30 s drain timeout")
	}
}

// under reports whether path p is in one of the mount points.
func under(p string, mounts map[string]string) bool {
	for _, m := range mounts {
		if p == m || strings.HasPrefix(p, strings.TrimSuffix(m, "/")+"/") {
			return true
		}
	}
	return false
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestStrictDecoding: the check fails on what the API server would refuse:
// a misspelt field, a wrong type, a bad quantity.
func TestStrictDecoding(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "kubernetes", "precompute-job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ old, new string }{
		{"completionMode:", "completionMod:"},
		{"completions: 16", "completions: sixteen"},
		{"memory: 8Gi", "memory: 8 gigs"},
	} {
		bad := strings.Replace(string(b), tc.old, tc.new, 1)
		var job batchv1.Job
		if err := yaml.UnmarshalStrict([]byte(bad), &job); err == nil {
			t.Errorf("%q → %q decoded without error", tc.old, tc.new)
		}
	}
}
