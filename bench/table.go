package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteTable prints r as aligned tables: every section with its medians
// and min–max, the ratio to the best peer per worker count (and per CPU
// second), fused precompute against the best peer per epoch, every peer's
// configurations with their CPU use and versions, and the served over
// loopback ratio per client count.
func (r *Report) WriteTable(w io.Writer) error {
	ratios := r.computeRatios()
	var b strings.Builder
	m, d := r.Machine, r.Dataset
	fmt.Fprintf(&b, "loaderd bench: %s, %d cores, GOMAXPROCS %d, %s %s/%s, decoder %s\n",
		orDash(m.CPU), m.Cores, m.GOMAXPROCS, m.GoVersion, m.OS, m.Arch, orDash(m.Decoder))
	if busy := float64(max(m.Cores, 1)) / 2; m.LoadStart > busy || m.LoadEnd > busy {
		fmt.Fprintf(&b, "warning: load average %.1f at the start, %.1f at the end on %d cores: other work competed, figures are noisy\n",
			m.LoadStart, m.LoadEnd, m.Cores)
	}
	fmt.Fprintf(&b, "dataset: %s (%d of %d images, %d classes, %.1f KB/image, %.2f bytes/px)\n",
		d.Source, d.Images, d.SourceImages, d.Classes, kb(d.Bytes, d.Images), d.BytesPerPixel)
	fmt.Fprintf(&b, "pipeline: %s (%d bytes/sample); medians of %d runs after a warm-up, [min–max]\n\n",
		d.Pipeline, d.RowBytes, r.Repeat)

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	coldRatio := map[int]PeerRatio{}
	for _, pr := range ratios.Peer {
		coldRatio[pr.Workers] = pr
	}
	fmt.Fprintln(tw, "COLD: decode + augment, files in memory")
	fmt.Fprintln(tw, "workers\timages/s\t[min–max]\tcores\tbest peer\tpeer images/s\tloaderd/peer\tper CPU-second\t")
	for _, p := range r.Cold {
		peer, rate, ratio, perCPU := "-", "-", "-", "-"
		if pr, ok := coldRatio[p.Workers]; ok {
			peer, rate, ratio = peerName(pr), fmt.Sprintf("%.0f", pr.PeerRate), fmt.Sprintf("%.2f", pr.Ratio)
			if pr.PerCPU > 0 {
				perCPU = fmt.Sprintf("%.2f", pr.PerCPU)
			}
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p.Workers, p.ImagesPerSec, span(p.Min, p.Max, "%.0f"),
			cores(p.CPUCores), peer, rate, ratio, perCPU)
	}
	fmt.Fprintln(tw, "\nPRECOMPUTE: augmented samples into the cache")
	fmt.Fprintln(tw, "epochs\timages/s\t[min–max]\tworkers\tcores\tbest peer per epoch\tpeer images/s\tloaderd/peer\tper CPU-second\t")
	for _, p := range r.Precompute {
		peer, rate, ratio, perCPU := "-", "-", "-", "-"
		if pr := ratios.Precompute; pr != nil && p.Epochs > 1 {
			peer, rate, ratio = peerName(*pr), fmt.Sprintf("%.0f", pr.PeerRate), fmt.Sprintf("%.2f", pr.Ratio)
			if pr.PerCPU > 0 {
				perCPU = fmt.Sprintf("%.2f", pr.PerCPU)
			}
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", p.Epochs, p.ImagesPerSec, span(p.Min, p.Max, "%.0f"), p.Workers,
			cores(p.CPUCores), peer, rate, ratio, perCPU)
	}
	served := map[int]ServedRatio{}
	for _, s := range ratios.Served {
		served[s.Clients] = s
	}
	fmt.Fprintln(tw, "\nWARM: cached epoch, Flight DoGet on loopback, client k of c reads rank k of world size c")
	fmt.Fprintln(tw, "clients\timages/s\t[min–max]\tGB/s\tserved/loopback\t")
	for _, p := range r.Warm {
		ratio := "-"
		if s, ok := served[p.Clients]; ok {
			ratio = fmt.Sprintf("%.2f (%d-stream TCP)", s.Ratio, s.Streams)
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%s\t%.2f\t%s\t\n", p.Clients, p.ImagesPerSec, span(p.Min, p.Max, "%.0f"), p.GBPerSec, ratio)
	}
	if len(r.Python) > 0 {
		pyRatio := map[string]PythonRatio{}
		for _, pr := range ratios.Python {
			pyRatio[pr.Name] = pr
		}
		fmt.Fprintln(tw, "\nPYTHON CLIENTS: the same cached epoch, 1 client, a process each")
		fmt.Fprintln(tw, "client\timages/s\t[min–max]\tGB/s\tCPU-s/GB\t/Go client\tserved/loopback\t")
		for _, p := range r.Python {
			if p.Error != "" {
				fmt.Fprintf(tw, "%s\tnot measured\t-\t-\t-\t-\t-\t\n", p.Label)
				continue
			}
			pr := pyRatio[p.Name]
			fmt.Fprintf(tw, "%s\t%.0f\t%s\t%.2f\t%.2f\t%s\t%s\t\n", p.Label, p.Point.ImagesPerSec,
				span(p.Point.Min, p.Point.Max, "%.0f"), p.Point.GBPerSec, p.CPUPerGB, ratioText(pr.OverGo, ""),
				ratioText(pr.OverLoopback, " (1-stream TCP)"))
		}
	}
	r.writeLocal(tw)
	fmt.Fprintln(tw, "\nLIMITS")
	fmt.Fprintln(tw, "\tstreams\tGB/s\t[min–max]\tsamples/s\t")
	l := r.Limits.Memcpy
	fmt.Fprintf(tw, "memcpy\t%d\t%.2f\t%s\t%.0f\t\n", l.Streams, l.GBPerSec, span(l.Min, l.Max, "%.2f"), l.SamplesPerSec)
	for _, l := range r.Limits.Loopback {
		fmt.Fprintf(tw, "loopback TCP\t%d\t%.2f\t%s\t%.0f\t\n", l.Streams, l.GBPerSec, span(l.Min, l.Max, "%.2f"), l.SamplesPerSec)
	}
	if len(r.Peers) > 0 {
		fmt.Fprintln(tw, "\nPEERS: the same files, the same work (decode, RandomResizedCrop(224), flip, uint8 HWC batches)")
		fmt.Fprintln(tw, "peer\tvariant\tworkers\tepochs\timages/s\t[min–max]\tcores\timages/CPU-s\t")
		for _, res := range r.Peers {
			if res.Error != "" {
				fmt.Fprintf(tw, "%s\tFAILED\t-\t-\t-\t-\t-\t-\t\n", res.Name)
			}
			for _, p := range slices.Concat(res.Cold, res.MultiEpoch, res.GPU) {
				perCPU := "-"
				if p.CPUCores > 0 {
					perCPU = fmt.Sprintf("%.0f", p.ImagesPerSec/p.CPUCores)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t\n", res.Name, orDash(p.Variant), p.Workers, p.Epochs,
					p.ImagesPerSec, span(p.Min, p.Max, "%.0f"), cores(p.CPUCores), perCPU)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench: table: %w", err)
	}
	for _, p := range r.Python {
		if p.Error != "" {
			fmt.Fprintf(&b, "python client %s not measured: %s\n", p.Name, p.Error)
		} else {
			fmt.Fprintf(&b, "python client %s: %s (%s)\n", p.Name, versionText(p.Versions), p.Python)
		}
	}
	for _, res := range r.Peers {
		if res.Error != "" {
			fmt.Fprintf(&b, "peer %s FAILED: %s\n", res.Name, res.Error)
		} else {
			fmt.Fprintf(&b, "peer %s: %s; %s (%s)\n", res.Name, res.Label, res.VersionText(), res.Python)
		}
	}
	if len(r.Peers) > 0 {
		fmt.Fprintln(&b, "workers: loaderd goroutines; DALI num_threads; tf.data num_parallel_calls and thread pool; DataLoader num_workers (0: in-process, counted as 1)")
	}
	if ratios.WarmOverPeer > 0 {
		fmt.Fprintf(&b, "warm/best peer: %.1f× (best warm images/s over the best peer's best cold images/s)\n", ratios.WarmOverPeer)
	}
	if ratios.WarmOverCold > 0 {
		fmt.Fprintf(&b, "warm/cold: %.1f× (best warm images/s over best cold images/s)\n", ratios.WarmOverCold)
	}
	if r.Seconds > 0 {
		fmt.Fprintf(&b, "bench ran %.0f s\n", r.Seconds)
	}
	if r.JSONPath != "" || r.PlotPath != "" || r.TablePath != "" {
		fmt.Fprintf(&b, "wrote %s\n", strings.Join(slices.DeleteFunc([]string{r.TablePath, r.JSONPath, r.PlotPath},
			func(s string) bool { return s == "" }), " "))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("bench: table: %w", err)
	}
	return nil
}

// peerName is "name variant (W=w)" of a ratio's peer point.
func peerName(pr PeerRatio) string {
	return fmt.Sprintf("%s %s (W=%d)", pr.Peer, orDash(pr.Variant), pr.PeerWorkers)
}

func cores(c float64) string {
	if c <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", c)
}

func span(lo, hi float64, f string) string {
	return "[" + fmt.Sprintf(f, lo) + "–" + fmt.Sprintf(f, hi) + "]"
}

func kb(bytes int64, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(bytes) / float64(n) / 1000
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ratioText(r float64, suffix string) string {
	if r <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f%s", r, suffix)
}

// versionText is "k v, k v" of vs in key order.
func versionText(vs map[string]string) string {
	keys := slices.Sorted(maps.Keys(vs))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + vs[k]
	}
	return strings.Join(parts, ", ")
}
