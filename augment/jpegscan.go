package augment

import (
	"bytes"
	"fmt"
)

// checkJPEGCost walks the marker structure of a JPEG file and checks its
// scans against lim (MaxScans, MaxScanSamples) without decoding any
// entropy-coded data: it only skips over it to the next marker. Both
// decoders call it before decoding, so they agree on the verdict.
func checkJPEGCost(b []byte, lim Limits) error {
	type comp struct {
		id      byte
		samples int64
	}
	var comps []comp
	maxScans, maxSamples := lim.maxScans(), lim.maxScanSamples()
	scans, samples := 0, int64(0)
	i := 2 // after SOI
	for i+4 <= len(b) {
		if b[i] != 0xFF { // bytes between markers: libjpeg skips them too
			j := bytes.IndexByte(b[i:], 0xFF)
			if j < 0 {
				break
			}
			i += j
			continue
		}
		m := b[i+1]
		switch {
		case m == 0xFF: // fill byte
			i++
			continue
		case m == 0xD9: // EOI
			return nil
		case m == 0x00 || m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7):
			i += 2
			continue
		}
		n := int(b[i+2])<<8 | int(b[i+3])
		if n < 2 || i+2+n > len(b) {
			break // truncated: the decoder reports it
		}
		seg := b[i+4 : i+2+n]
		i += 2 + n
		switch {
		case m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC && comps == nil && len(seg) >= 6:
			h, w, nf := int64(seg[1])<<8|int64(seg[2]), int64(seg[3])<<8|int64(seg[4]), int(seg[5])
			if len(seg) < 6+3*nf {
				continue
			}
			hmax, vmax := int64(1), int64(1)
			for k := range nf {
				hmax = max(hmax, int64(seg[7+3*k]>>4))
				vmax = max(vmax, int64(seg[7+3*k]&15))
			}
			comps = make([]comp, nf)
			for k := range nf {
				hs, vs := int64(seg[7+3*k]>>4), int64(seg[7+3*k]&15)
				cw, ch := (w*hs+hmax-1)/hmax, (h*vs+vmax-1)/vmax
				comps[k] = comp{id: seg[6+3*k], samples: cw * ch}
			}
		case m == 0xDA: // SOS, then entropy-coded data up to the next marker
			scans++
			if scans > maxScans {
				return fmt.Errorf("%w: %w: jpeg: more than %d scans (scan limit)", ErrDecode, ErrTooLarge, maxScans)
			}
			if len(seg) > 0 {
				for k := range min(int(seg[0]), (len(seg)-1)/2) {
					for _, c := range comps {
						if c.id == seg[1+2*k] {
							samples += c.samples
							break
						}
					}
				}
			}
			if samples > maxSamples {
				return fmt.Errorf("%w: %w: jpeg: its scans visit more than %d samples (scan work limit)", ErrDecode, ErrTooLarge, maxSamples)
			}
			for i < len(b) {
				j := bytes.IndexByte(b[i:], 0xFF)
				if j < 0 {
					return nil
				}
				i += j
				if i+1 < len(b) && (b[i+1] == 0 || (b[i+1] >= 0xD0 && b[i+1] <= 0xD7)) {
					i += 2 // stuffed zero or restart marker: still entropy-coded data
					continue
				}
				break
			}
		}
	}
	return nil
}
