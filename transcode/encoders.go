package transcode

import (
	"fmt"
	"strconv"
)

// Encoder is the strategy for one H.264 encoder: everything that differs
// between libx264 and the hardware encoders lives behind it, so Args stays
// one function.
type Encoder interface {
	// Name is ffmpeg's codec name ("libx264", "h264_nvenc").
	Name() string
	// GlobalArgs come before the input: hardware device setup.
	GlobalArgs() []string
	// FilterTail ends every rung's filter chain: the pixel format the
	// encoder takes and, for VAAPI/QSV, the upload to GPU memory.
	FilterTail() string
	// StreamArgs are the codec, preset, profile, rate-control and
	// keyframe-policy options for output video stream idx. gop is the
	// keyframe interval in frames (0 when the frame rate is unknown).
	StreamArgs(idx int, r PlannedRung, gop int) []string
}

// X264 is libx264, the default: every ffmpeg build has it.
type X264 struct{}

// NVENC is NVIDIA's h264_nvenc. It takes system-memory frames and uploads
// them itself, so no hwupload is needed.
type NVENC struct {
	// GPU selects the card (-gpu); -1 or 0 means the first one.
	GPU int
}

// VAAPI is h264_vaapi (Intel/AMD on Linux).
type VAAPI struct {
	// Device is the DRM render node; default /dev/dri/renderD128.
	Device string
}

// QSV is Intel Quick Sync's h264_qsv.
type QSV struct {
	// Device is the DRM render node; default /dev/dri/renderD128.
	Device string
}

var (
	_ Encoder = X264{}
	_ Encoder = NVENC{}
	_ Encoder = VAAPI{}
	_ Encoder = QSV{}
)

// EncoderByName returns the strategy for a config value ("libx264",
// "h264_nvenc", "h264_vaapi", "h264_qsv"; "" means libx264). device is the
// render node for VAAPI/QSV (empty for the default).
func EncoderByName(name, device string) (Encoder, error) {
	switch name {
	case "", "libx264", "x264":
		return X264{}, nil
	case "h264_nvenc", "nvenc":
		gpu := 0
		if device != "" {
			n, err := strconv.Atoi(device)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("transcode.hw_device %q: h264_nvenc takes a GPU index (0, 1, ...)", device)
			}
			gpu = n
		}
		return NVENC{GPU: gpu}, nil
	case "h264_vaapi", "vaapi":
		return VAAPI{Device: device}, nil
	case "h264_qsv", "qsv":
		return QSV{Device: device}, nil
	}
	return nil, fmt.Errorf("unknown encoder %q (use libx264, h264_nvenc, h264_vaapi or h264_qsv)", name)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// opt names a per-output-stream option ("-preset:v:1").
func opt(name string, idx int) string { return "-" + name + ":v:" + strconv.Itoa(idx) }

func (X264) Name() string         { return "libx264" }
func (X264) GlobalArgs() []string { return nil }

// FilterTail forces 4:2:0: a 4:2:2 or 10-bit source would otherwise give
// High 4:2:2 / High 10, which most players cannot decode.
func (X264) FilterTail() string { return "format=yuv420p" }

func (X264) StreamArgs(idx int, r PlannedRung, gop int) []string {
	a := []string{
		opt("c", idx), "libx264",
		opt("preset", idx), orDefault(r.Preset, "veryfast"),
		opt("profile", idx), orDefault(r.Profile, "high"),
	}
	if gop > 0 {
		// A fixed GOP (keyint_min = keyint) and no scene-cut keyframes: the
		// only keyframes are the forced ones, identical in every rendition.
		a = append(a, opt("g", idx), strconv.Itoa(gop), opt("keyint_min", idx), strconv.Itoa(gop))
	}
	return append(a, opt("sc_threshold", idx), "0")
}

func (n NVENC) Name() string { return "h264_nvenc" }
func (n NVENC) GlobalArgs() []string {
	return nil
}
func (NVENC) FilterTail() string { return "format=yuv420p" }

// nvencPreset maps x264 preset names onto NVENC's p1 (fastest) … p7.
func nvencPreset(p string) string {
	switch p {
	case "ultrafast", "superfast":
		return "p1"
	case "veryfast", "":
		return "p2"
	case "faster":
		return "p3"
	case "fast":
		return "p4"
	case "medium":
		return "p5"
	case "slow":
		return "p6"
	}
	return "p7"
}

func (n NVENC) StreamArgs(idx int, r PlannedRung, gop int) []string {
	a := []string{
		opt("c", idx), "h264_nvenc",
		opt("preset", idx), nvencPreset(r.Preset),
		opt("tune", idx), "ll",
		opt("profile", idx), orDefault(r.Profile, "high"),
		opt("rc", idx), "vbr",
	}
	if n.GPU > 0 {
		a = append(a, opt("gpu", idx), strconv.Itoa(n.GPU))
	}
	if gop > 0 {
		a = append(a, opt("g", idx), strconv.Itoa(gop))
	}
	// NVENC ignores -sc_threshold: its own switches turn scene cuts off and
	// make forced keyframes IDRs (segments must start decodable).
	return append(a, opt("no-scenecut", idx), "1", opt("forced-idr", idx), "1")
}

const defaultRenderNode = "/dev/dri/renderD128"

func (VAAPI) Name() string { return "h264_vaapi" }
func (v VAAPI) GlobalArgs() []string {
	return []string{"-init_hw_device", "vaapi=va:" + orDefault(v.Device, defaultRenderNode), "-filter_hw_device", "va"}
}

// FilterTail scales in software (portable) and uploads the result.
func (VAAPI) FilterTail() string { return "format=nv12,hwupload" }

func (VAAPI) StreamArgs(idx int, r PlannedRung, gop int) []string {
	profile := orDefault(r.Profile, "high")
	if profile == "baseline" {
		profile = "constrained_baseline" // the only baseline VAAPI encodes
	}
	a := []string{
		opt("c", idx), "h264_vaapi",
		opt("profile", idx), profile,
		opt("rc_mode", idx), "VBR",
	}
	if gop > 0 {
		a = append(a, opt("g", idx), strconv.Itoa(gop))
	}
	// VAAPI has no scene-cut detection; B-frames off keeps latency low and
	// every driver happy.
	return append(a, opt("bf", idx), "0")
}

func (QSV) Name() string { return "h264_qsv" }
func (q QSV) GlobalArgs() []string {
	return []string{"-init_hw_device", "qsv=qs:hw,child_device=" + orDefault(q.Device, defaultRenderNode), "-filter_hw_device", "qs"}
}
func (QSV) FilterTail() string { return "format=nv12,hwupload=extra_hw_frames=64" }

// qsvPreset maps x264 preset names onto QSV's (which start at veryfast).
func qsvPreset(p string) string {
	switch p {
	case "ultrafast", "superfast", "":
		return "veryfast"
	}
	return p
}

func (QSV) StreamArgs(idx int, r PlannedRung, gop int) []string {
	a := []string{
		opt("c", idx), "h264_qsv",
		opt("preset", idx), qsvPreset(r.Preset),
		opt("profile", idx), orDefault(r.Profile, "high"),
		opt("look_ahead", idx), "0",
	}
	if gop > 0 {
		a = append(a, opt("g", idx), strconv.Itoa(gop))
	}
	// forced_idr: a forced keyframe must be an IDR, not just an I-frame,
	// for the segment to start decodable.
	return append(a, opt("forced_idr", idx), "1")
}
