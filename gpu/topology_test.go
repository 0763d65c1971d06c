package gpu

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []int
		wantErr bool
	}{
		{name: "empty", in: "", want: nil},
		{name: "newline only", in: "\n", want: nil},
		{name: "single", in: "3\n", want: []int{3}},
		{name: "ranges", in: "0-2,8,10-11", want: []int{0, 1, 2, 8, 10, 11}},
		{name: "unsorted and overlapping", in: "4-5,0,4", want: []int{0, 4, 5}},
		{name: "reversed range", in: "5-3", wantErr: true},
		{name: "negative", in: "-1", wantErr: true},
		{name: "not a number", in: "a-b", wantErr: true},
		{name: "past maxCPU", in: "0-4096", wantErr: true},
		{name: "empty element", in: "1,,2", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCPUList(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrBadCPUSet) {
					t.Errorf("ParseCPUList(%q) = %v, %v; want ErrBadCPUSet", tc.in, got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseCPUList(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestFormatCPUList(t *testing.T) {
	tests := []struct {
		name string
		in   []int
		want string
	}{
		{name: "none", in: nil, want: ""},
		{name: "one", in: []int{7}, want: "7"},
		{name: "pair", in: []int{1, 2}, want: "1-2"},
		{name: "DGX socket", in: append(seq(0, 55), seq(112, 167)...), want: "0-55,112-167"},
		{name: "unsorted with duplicates", in: []int{5, 1, 2, 2, 9}, want: "1-2,5,9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := FormatCPUList(tc.in); got != tc.want {
				t.Errorf("FormatCPUList(%v) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzCPUList(f *testing.F) {
	for _, s := range []string{"0-3,8", "", "1,1,1", "5-3", "0-1023", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cpus, err := ParseCPUList(s)
		if err != nil {
			return
		}
		again, err := ParseCPUList(FormatCPUList(cpus))
		if err != nil || !reflect.DeepEqual(again, cpus) {
			t.Fatalf("round trip of %q: %v -> %q -> %v, %v", s, cpus, FormatCPUList(cpus), again, err)
		}
	})
}

func TestFindGPU(t *testing.T) {
	topo := &Topology{Devices: []Device{
		{Index: 0, UUID: "GPU-aaaa-0000", PCIBusID: "0000:18:00.0"},
		{Index: 1, UUID: "GPU-bbbb-1111", PCIBusID: "0000:2a:00.0"},
		{Index: 3, UUID: "GPU-cccc-3333", PCIBusID: "0001:9a:00.0"}, // index 2 hidden
	}}
	tests := []struct {
		name string
		id   string
		want int // position; -1 = ErrUnknownGPU
	}{
		{name: "index", id: "1", want: 1},
		{name: "index is not the position", id: "3", want: 2},
		{name: "missing index", id: "2", want: -1},
		{name: "negative index", id: "-1", want: -1},
		{name: "UUID", id: "GPU-bbbb-1111", want: 1},
		{name: "UUID upper case", id: "GPU-CCCC-3333", want: 2},
		{name: "UUID without GPU- prefix", id: "aaaa-0000", want: 0},
		{name: "bus id", id: "0000:2a:00.0", want: 1},
		{name: "bus id upper case", id: "0000:2A:00.0", want: 1},
		{name: "NVML's 8-digit domain", id: "00000000:18:00.0", want: 0},
		{name: "bus id without domain", id: "18:00.0", want: 0},
		{name: "other domain", id: "0001:9a:00.0", want: 2},
		{name: "other domain needs the domain", id: "9a:00.0", want: -1},
		{name: "surrounding space", id: " 0 ", want: 0},
		{name: "unknown UUID", id: "GPU-dddd", want: -1},
		{name: "unknown bus", id: "0000:ff:00.0", want: -1},
		{name: "empty", id: "", want: -1},
		{name: "garbage", id: "::.", want: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := topo.FindGPU(tc.id)
			if tc.want < 0 {
				if !errors.Is(err, ErrUnknownGPU) {
					t.Errorf("FindGPU(%q) = %d, %v; want ErrUnknownGPU", tc.id, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("FindGPU(%q) = %d, %v; want %d", tc.id, got, err, tc.want)
			}
		})
	}
	var none *Topology
	if _, err := none.FindGPU("0"); !errors.Is(err, ErrUnknownGPU) {
		t.Errorf("nil Topology FindGPU = %v, want ErrUnknownGPU", err)
	}
}
