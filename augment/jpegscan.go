package augment

import (
	"bytes"
	"fmt"
)

// jpegMarkers is what the marker structure of a JPEG file says, read
// without decoding any entropy-coded data.
type jpegMarkers struct {
	scans       int
	samples     int64 // summed over the scans: the samples of each scan's components
	progressive bool  // SOF2, SOF6, SOF10, SOF14
	arithmetic  bool  // SOF9..SOF15
	restart     bool  // a DRI marker with a non-zero interval
	adobe       bool  // an Adobe APP14 segment
	ncomp       int
	subsampled  bool // a component with more than one block per MCU (h×v > 1)
}

// readJPEGMarkers walks the marker structure of a JPEG file, skipping over
// entropy-coded data to the next marker, and checks its scans against lim
// (MaxScans, MaxScanSamples) as it goes. Both decoders call it before
// decoding, so they agree on the verdict; it costs microseconds.
func readJPEGMarkers(b []byte, lim Limits) (jpegMarkers, error) {
	type comp struct {
		id      byte
		samples int64
	}
	var m jpegMarkers
	var comps []comp
	maxScans, maxSamples := lim.maxScans(), lim.maxScanSamples()
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
		mk := b[i+1]
		switch {
		case mk == 0xFF: // fill byte
			i++
			continue
		case mk == 0xD9: // EOI
			return m, nil
		case mk == 0x00 || mk == 0x01 || mk == 0xD8 || (mk >= 0xD0 && mk <= 0xD7):
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
		case mk >= 0xC0 && mk <= 0xCF && mk != 0xC4 && mk != 0xC8 && mk != 0xCC && comps == nil && len(seg) >= 6:
			h, w, nf := int64(seg[1])<<8|int64(seg[2]), int64(seg[3])<<8|int64(seg[4]), int(seg[5])
			if len(seg) < 6+3*nf {
				continue
			}
			m.progressive = mk&3 == 2
			m.arithmetic = mk >= 0xC9
			m.ncomp = nf
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
				m.subsampled = m.subsampled || hs*vs > 1
			}
		case mk == 0xDD && len(seg) >= 2: // DRI
			m.restart = m.restart || seg[0] != 0 || seg[1] != 0
		case mk == 0xEE && len(seg) >= 5 && string(seg[:5]) == "Adobe":
			m.adobe = true
		case mk == 0xDA: // SOS, then entropy-coded data up to the next marker
			m.scans++
			if m.scans > maxScans {
				return m, fmt.Errorf("%w: %w: jpeg: more than %d scans (scan limit)", ErrDecode, ErrTooLarge, maxScans)
			}
			if len(seg) > 0 {
				for k := range min(int(seg[0]), (len(seg)-1)/2) {
					for _, c := range comps {
						if c.id == seg[1+2*k] {
							m.samples += c.samples
							break
						}
					}
				}
			}
			if m.samples > maxSamples {
				return m, fmt.Errorf("%w: %w: jpeg: its scans visit more than %d samples (scan work limit)", ErrDecode, ErrTooLarge, maxSamples)
			}
			for i < len(b) {
				j := bytes.IndexByte(b[i:], 0xFF)
				if j < 0 {
					return m, nil
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
	return m, nil
}

// checkJPEGCost checks the scans of a JPEG file against lim.
func checkJPEGCost(b []byte, lim Limits) error {
	_, err := readJPEGMarkers(b, lim)
	return err
}

// goJPEG prepares a JPEG file for Go's image/jpeg, which Pillow's readings
// of some files need: a 4-component file without an Adobe APP14 marker
// gets one saying "CMYK" (Pillow, like libjpeg, reads such a file as
// Adobe-inverted CMYK; image/jpeg refuses it). Files image/jpeg cannot
// decode correctly are refused with the reason.
func goJPEG(src []byte, m jpegMarkers) ([]byte, error) {
	switch {
	case m.arithmetic:
		return nil, fmt.Errorf("%w: jpeg: arithmetic coding: the Go decoder (image/jpeg) has none; libjpeg-turbo decodes it", ErrDecode)
	case m.progressive && m.restart && m.subsampled:
		// image/jpeg counts restart intervals per MCU of the interleaved
		// layout in non-interleaved scans too, where an MCU is one block.
		return nil, fmt.Errorf("%w: jpeg: progressive with restart markers and subsampling: the Go decoder (image/jpeg) cannot decode it; libjpeg-turbo does", ErrDecode)
	case m.ncomp == 4 && !m.adobe:
		adobe := []byte{0xFF, 0xEE, 0, 14, 'A', 'd', 'o', 'b', 'e', 0, 100, 0, 0, 0, 0, 0} // transform 0: CMYK
		out := make([]byte, 0, len(src)+len(adobe))
		out = append(out, src[:2]...)
		out = append(out, adobe...)
		return append(out, src[2:]...), nil
	}
	return src, nil
}
