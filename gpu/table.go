package gpu

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteTable writes t and p as the text `loaderd topology` prints: the
// source and warnings, the NUMA nodes, one row per GPU with its local CPUs
// and the pool that feeds it (workers pinned to the pool's CPUs), the default pool, and the GPU-to-GPU link matrix.
func WriteTable(w io.Writer, t *Topology, p Placement) error {
	if t == nil {
		t = &Topology{}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	src := t.Source
	if t.Driver != "" {
		src += " (driver " + t.Driver + ")"
	}
	fmt.Fprintf(tw, "Source:\t%s\n", src)
	fmt.Fprintf(tw, "CPUs:\t%s (%d online)\n", orDash(FormatCPUList(t.CPUs)), len(t.CPUs))
	switch {
	case t.Warning == "":
	case len(t.Devices) == 0: // no NVIDIA GPU at all: nothing is degraded (Load logs it at Info)
		fmt.Fprintf(tw, "GPUs:\tnone (%s)\n", cause(t.Warning))
	default:
		fmt.Fprintf(tw, "Warning:\t%s\n", t.Warning)
	}
	if len(t.Nodes) > 0 {
		fmt.Fprintf(tw, "\nNUMA\tCPUS\tMEMORY\n")
		for _, n := range t.Nodes {
			fmt.Fprintf(tw, "%d\t%s\t%s\n", n.ID, orDash(FormatCPUList(n.CPUs)), bytesText(n.MemoryBytes))
		}
	}
	if len(t.Devices) > 0 {
		fmt.Fprintf(tw, "\nGPU\tNAME\tUUID\tPCI BUS ID\tMEMORY\tNUMA\tCPUS\tWORKERS\n")
		for i, d := range t.Devices {
			workers, cpus := "-", d.CPUs
			if k := p.PoolFor(i); k >= 0 && p.Pools[k].GPU == i {
				workers = strconv.Itoa(p.Pools[k].Workers)
				cpus = p.Pools[k].CPUs
			}
			numa := "-"
			if d.NUMANode >= 0 {
				numa = strconv.Itoa(d.NUMANode)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Index, orDash(d.Name), orDash(d.UUID),
				orDash(d.PCIBusID), bytesText(d.MemoryBytes), numa, orDash(FormatCPUList(cpus)), workers)
		}
		fmt.Fprintf(tw, "(a request naming a GPU is served by WORKERS threads pinned to its CPUS)\n")
	}
	if k := p.PoolFor(-1); k >= 0 {
		fmt.Fprintf(tw, "\nDefault pool:\t%d workers on CPUs %s (requests naming no GPU)\n",
			p.Pools[k].Workers, orDash(FormatCPUList(p.Pools[k].CPUs)))
	}
	for _, d := range t.Devices {
		if d.Warning != "" {
			fmt.Fprintf(tw, "Warning:\tGPU %d: %s\n", d.Index, d.Warning)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("gpu: write table: %w", err)
	}
	if len(t.Links) > 0 {
		return writeLinks(w, t)
	}
	return nil
}

// writeLinks writes the link matrix, like `nvidia-smi topo -m`.
func writeLinks(w io.Writer, t *Topology) error {
	n := len(t.Devices)
	level := make([][]string, n)
	for i := range level {
		level[i] = make([]string, n)
		for j := range level[i] {
			level[i][j] = "-"
		}
		level[i][i] = "X"
	}
	for _, l := range t.Links {
		if l.A >= 0 && l.A < n && l.B >= 0 && l.B < n {
			s := strings.Replace(l.Level, "NVLINK x", "NV", 1)
			level[l.A][l.B], level[l.B][l.A] = s, s
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nLINKS")
	for _, d := range t.Devices {
		fmt.Fprintf(tw, "\tGPU%d", d.Index)
	}
	fmt.Fprintln(tw)
	for i, d := range t.Devices {
		fmt.Fprintf(tw, "GPU%d\t%s\n", d.Index, strings.Join(level[i], "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("gpu: write table: %w", err)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// bytesText prints a size in binary units ("80.0 GiB"); "-" for 0.
func bytesText(b uint64) string {
	if b == 0 {
		return "-"
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v, u := float64(b), 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if u == 0 {
		return fmt.Sprintf("%d B", b)
	}
	return fmt.Sprintf("%.1f %s", v, units[u])
}
