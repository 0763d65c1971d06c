package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints r as aligned tables: every section with its medians
// and min–max, the loaderd/peer ratio per worker count and the served over
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
	peerAt := map[int]Point{}
	for _, p := range r.Peer {
		peerAt[p.Workers] = p
	}
	fmt.Fprintln(tw, "COLD: decode + augment, files in memory")
	fmt.Fprintln(tw, "workers\timages/s\t[min–max]\ttorchvision\tloaderd/peer\t")
	for _, p := range r.Cold {
		peer, ratio := "-", "-"
		if q, ok := peerAt[coldPeerWorkers(p.Workers)]; ok && q.ImagesPerSec > 0 {
			peer = fmt.Sprintf("%.0f (W=%d)", q.ImagesPerSec, q.Workers)
			ratio = fmt.Sprintf("%.2f", p.ImagesPerSec/q.ImagesPerSec)
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t%s\t\n", p.Workers, p.ImagesPerSec, span(p.Min, p.Max, "%.0f"), peer, ratio)
	}
	fmt.Fprintln(tw, "\nPRECOMPUTE: augmented samples into the cache")
	fmt.Fprintln(tw, "epochs\timages/s\t[min–max]\tworkers\t")
	for _, p := range r.Precompute {
		fmt.Fprintf(tw, "%d\t%.0f\t%s\t%d\t\n", p.Epochs, p.ImagesPerSec, span(p.Min, p.Max, "%.0f"), p.Workers)
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
	fmt.Fprintln(tw, "\nLIMITS")
	fmt.Fprintln(tw, "\tstreams\tGB/s\t[min–max]\tsamples/s\t")
	l := r.Limits.Memcpy
	fmt.Fprintf(tw, "memcpy\t%d\t%.2f\t%s\t%.0f\t\n", l.Streams, l.GBPerSec, span(l.Min, l.Max, "%.2f"), l.SamplesPerSec)
	for _, l := range r.Limits.Loopback {
		fmt.Fprintf(tw, "loopback TCP\t%d\t%.2f\t%s\t%.0f\t\n", l.Streams, l.GBPerSec, span(l.Min, l.Max, "%.2f"), l.SamplesPerSec)
	}
	if len(r.Peer) > 0 {
		fmt.Fprintln(tw, "\nPEER: torchvision DataLoader, same images")
		fmt.Fprintln(tw, "num_workers\timages/s\t[min–max]\tloaderd (workers)\tloaderd/peer\t")
		ratioAt := map[int]PeerRatio{}
		for _, pr := range ratios.Peer {
			ratioAt[pr.PeerWorkers] = pr
		}
		for _, p := range r.Peer {
			ours, ratio := "-", "-"
			if pr, ok := ratioAt[p.Workers]; ok {
				ours, ratio = fmt.Sprintf("%.0f (%d)", pr.Loaderd, pr.Workers), fmt.Sprintf("%.2f", pr.Ratio)
			}
			fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t%s\t\n", p.Workers, p.ImagesPerSec, span(p.Min, p.Max, "%.0f"), ours, ratio)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench: table: %w", err)
	}
	if r.PeerError != "" {
		fmt.Fprintf(&b, "peer unavailable: %s\n", r.PeerError)
	} else if r.PeerInfo != "" {
		fmt.Fprintf(&b, "peer: %s (num_workers 0 runs in-process and compares with 1 worker)\n", r.PeerInfo)
	}
	if ratios.WarmOverCold > 0 {
		fmt.Fprintf(&b, "warm/cold: %.1f× (best warm images/s over best cold images/s)\n", ratios.WarmOverCold)
	}
	if r.Seconds > 0 {
		fmt.Fprintf(&b, "bench ran %.0f s\n", r.Seconds)
	}
	if r.JSONPath != "" || r.PlotPath != "" {
		fmt.Fprintf(&b, "wrote %s %s\n", r.JSONPath, r.PlotPath)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("bench: table: %w", err)
	}
	return nil
}

// coldPeerWorkers is the peer's num_workers compared with w cold workers:
// 0 (in-process) for one worker, else w.
func coldPeerWorkers(w int) int {
	if w == 1 {
		return 0
	}
	return w
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
