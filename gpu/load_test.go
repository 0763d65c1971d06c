package gpu

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

func TestLoadFallback(t *testing.T) {
	nvmlTopo := &Topology{Source: SourceNVML, CPUs: seq(0, 1), Devices: []Device{{Index: 0, UUID: "GPU-x", CPUs: seq(0, 1)}}}
	other := errors.New("boom")
	tests := []struct {
		name       string
		discover   error // nil: NVML answers nvmlTopo
		requireGPU bool
		wantSource string
		wantErr    error
		sys        string // fake sysfs tree; "" → sysfs-2node (two NVIDIA GPUs)
		wantWarn   string // in Topology.Warning and logged once
		wantLevel  string // of that log line: WARN with GPUs in sysfs, INFO without
	}{
		{name: "NVML works", wantSource: SourceNVML},
		{name: "no NVML, GPUs in sysfs", discover: fmt.Errorf("%w: nvml Init: ERROR_LIBRARY_NOT_FOUND", ErrNoNVML),
			wantSource: SourceSysfs, wantWarn: "NVML not available", wantLevel: "WARN"},
		{name: "no GPU, GPUs in sysfs", discover: ErrNoGPU, wantSource: SourceSysfs, wantWarn: "no GPU found", wantLevel: "WARN"},
		{name: "no NVML, no GPU anywhere", discover: fmt.Errorf("%w: nvml Init: ERROR_LIBRARY_NOT_FOUND", ErrNoNVML),
			sys: "sysfs-nogpu", wantSource: SourceSysfs, wantWarn: "NVML not available", wantLevel: "INFO"},
		{name: "no NVML, GPU required", discover: ErrNoNVML, requireGPU: true, wantErr: ErrNoNVML},
		{name: "no GPU, GPU required", discover: ErrNoGPU, requireGPU: true, wantErr: ErrNoGPU},
		{name: "other NVML failure", discover: other, wantErr: other},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			sys := cmp.Or(tc.sys, "sysfs-2node")
			o := &Options{SysRoot: fakeSys(t, sys), RequireGPU: tc.requireGPU,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			topo, err := load(o, func(*Options) (*Topology, error) {
				if tc.discover != nil {
					return nil, tc.discover
				}
				return nvmlTopo, nil
			})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("load = %+v, %v; want %v", topo, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if topo.Source != tc.wantSource {
				t.Errorf("source %q, want %q", topo.Source, tc.wantSource)
			}
			if tc.wantWarn == "" {
				if topo.Warning != "" || logs.Len() != 0 {
					t.Errorf("warning %q, logs %q; want none", topo.Warning, logs.String())
				}
				return
			}
			if !strings.Contains(topo.Warning, tc.wantWarn) || !strings.Contains(topo.Warning, "sysfs") {
				t.Errorf("warning %q, want it to say %q and sysfs", topo.Warning, tc.wantWarn)
			}
			// Once; GPU warnings may follow if this machine has fewer CPUs than the tree.
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if !strings.Contains(lines[0], "level="+tc.wantLevel) || !strings.Contains(lines[0], strings.TrimPrefix(tc.wantWarn, "no ")) ||
				strings.Count(logs.String(), "NVML not available")+strings.Count(logs.String(), "no GPU found") != 1 {
				t.Errorf("logged the fallback as\n%s\nwant it once, at %s, saying %q", logs.String(), tc.wantLevel, tc.wantWarn)
			}
			if tc.wantLevel == "INFO" && strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("a machine without a GPU got a warning:\n%s", logs.String())
			}
			if want := map[string]int{"sysfs-2node": 2, "sysfs-nogpu": 0}[sys]; len(topo.Devices) != want {
				t.Errorf("sysfs fallback found %d GPUs, want the tree's %d", len(topo.Devices), want)
			}
		})
	}
}

// TestLoadHere runs the real Load on this machine's sysfs. Without
// libnvidia-ml (the build machine) it must fall back, logging that once:
// at Info when sysfs shows no NVIDIA GPU either, at Warn when it does; with
// a GPU it must find it through NVML.
func TestLoadHere(t *testing.T) {
	var logs bytes.Buffer
	topo, err := Load(&Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	switch topo.Source {
	case SourceSysfs:
		level := "level=WARN"
		if len(topo.Devices) == 0 {
			level = "level=INFO"
			if strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("a machine without an NVIDIA GPU got a warning: %q", logs.String())
			}
		}
		if !strings.Contains(topo.Warning, "NVML not available") || strings.Count(logs.String(), level) < 1 {
			t.Errorf("sysfs fallback without the NVML line at %s: %q, logs %q", level, topo.Warning, logs.String())
		}
		_, err := Load(&Options{RequireGPU: true})
		if !errors.Is(err, ErrNoNVML) && !errors.Is(err, ErrNoGPU) {
			t.Errorf("Load(RequireGPU) = %v, want ErrNoNVML or ErrNoGPU", err)
		}
	case SourceNVML:
		if len(topo.Devices) == 0 {
			t.Errorf("NVML topology without devices: %+v", topo)
		}
	default:
		t.Errorf("source %q", topo.Source)
	}
	if len(topo.CPUs) == 0 {
		t.Errorf("no CPUs: %+v", topo)
	}
}

func TestRestrict(t *testing.T) {
	topo := twoSockets(0, 1)
	got := restrict(topo, seq(0, 3))
	want := &Topology{
		CPUs:  seq(0, 3),
		Nodes: []NUMANode{{ID: 0, CPUs: seq(0, 3)}, {ID: 1}},
		Devices: []Device{
			{Index: 0, NUMANode: 0, CPUs: seq(0, 3)},
			{Index: 1, NUMANode: 1, CPUs: seq(0, 3),
				Warning: "gpu: local CPUs 8-15 outside this process's CPUs 0-3; using those"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("restrict =\n%+v\nwant\n%+v", got, want)
	}
	if !reflect.DeepEqual(topo, twoSockets(0, 1)) {
		t.Errorf("restrict changed its argument: %+v", topo)
	}
	if r := restrict(topo, nil); r != topo {
		t.Errorf("restrict with no allowed set must leave the topology alone")
	}
}
