package transcode

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ArgsOptions are the per-process settings of Args.
type ArgsOptions struct {
	// SegmentDuration is where keyframes are forced (default 2s).
	SegmentDuration time.Duration
	// FirstOutputFD is the descriptor of the first rendition's pipe; the
	// others follow and progress comes last. Default 3 (the first of
	// exec.Cmd.ExtraFiles).
	FirstOutputFD int
	// NoAudio drops the audio encode (a video-only publication).
	NoAudio bool
}

func (o ArgsOptions) withDefaults() ArgsOptions {
	if o.SegmentDuration <= 0 {
		o.SegmentDuration = 2 * time.Second
	}
	if o.FirstOutputFD <= 0 {
		o.FirstOutputFD = 3
	}
	return o
}

// ProgressFD is the descriptor Args uses for -progress with n renditions.
func (o ArgsOptions) ProgressFD(n int) int { return o.withDefaults().FirstOutputFD + n }

// Args builds the argument list (without the program name) of the one
// ffmpeg process that makes every encoded rung of plan: MPEG-TS in on
// stdin, decoded once, split and scaled per rung in one filter graph, each
// rung encoded with keyframes forced at segment boundaries, audio encoded
// once to AAC, and each rendition (its video + the shared audio) written
// as MPEG-TS to its own descriptor through the tee muxer. Source
// (pass-through) rungs are skipped: the packager takes them from the hub.
func Args(plan []PlannedRung, audio Audio, enc Encoder, opts ArgsOptions) []string {
	opts = opts.withDefaults()
	rungs := Encoded(plan)
	n := len(rungs)
	seg := opts.SegmentDuration.Seconds()
	segStr := strconv.FormatFloat(seg, 'f', -1, 64)

	a := []string{"-hide_banner", "-nostats", "-loglevel", "warning",
		"-progress", "pipe:" + strconv.Itoa(opts.ProgressFD(n))}
	a = append(a, enc.GlobalArgs()...)
	// A short probe: the stream is live and each second here is a second
	// of delay at every (re)start; our muxer writes PAT/PMT up front.
	a = append(a, "-analyzeduration", "1000000", "-probesize", "1000000",
		"-f", "mpegts", "-i", "pipe:0")
	a = append(a, "-filter_complex", filterGraph(rungs, enc))
	for i := range rungs {
		a = append(a, "-map", fmt.Sprintf("[v%d]", i))
	}
	if !opts.NoAudio {
		a = append(a, "-map", "0:a:0")
	}
	for i, r := range rungs {
		gop := 0
		if r.FPS > 0 {
			gop = int(math.Round(seg * r.FPS))
		}
		a = append(a, enc.StreamArgs(i, r, gop)...)
		vb := r.VideoBitrate
		mb := orDefault(r.MaxBitrate, vb)
		a = append(a,
			opt("b", i), vb,
			opt("maxrate", i), mb,
			opt("bufsize", i), doubleBitrate(mb),
			// Keyframes on the segment grid of this process's timeline:
			// the same frames in every rendition, so segments align.
			opt("force_key_frames", i), "expr:gte(t,n_forced*"+segStr+")",
		)
	}
	if !opts.NoAudio {
		// Pad the start with silence from the timeline's zero: encoders
		// prime the audio tens of milliseconds after the first picture,
		// which players see as a buffer hole at the start of a run. The
		// packager trims the audio to the video's first segment.
		a = append(a, "-af", "aresample=async=1:first_pts=0")
		a = append(a, "-c:a", "aac", "-b:a", audio.Bitrate,
			"-ar", strconv.Itoa(audio.SampleRate), "-ac", strconv.Itoa(audio.Channels))
	}
	slaves := make([]string, n)
	for i := range rungs {
		sel := strconv.Itoa(i)
		if !opts.NoAudio {
			sel += "," + strconv.Itoa(n) // the audio stream comes after the n videos
		}
		slaves[i] = fmt.Sprintf(`[select=\'%s\':f=mpegts]pipe\:%d`, sel, opts.FirstOutputFD+i)
	}
	return append(a, "-f", "tee", strings.Join(slaves, "|"))
}

// filterGraph decodes once (deinterlace and rotation before the split, so
// they run once) and gives every rung its own fps/scale chain.
func filterGraph(rungs []PlannedRung, enc Encoder) string {
	var pre []string
	if len(rungs) > 0 {
		if rungs[0].Deinterlace {
			// deint=interlaced: only frames flagged interlaced, so a
			// mixed (PAFF) source keeps its progressive frames sharp.
			pre = append(pre, "yadif=deint=interlaced")
		}
		switch rungs[0].Rotation {
		case 90:
			pre = append(pre, "transpose=clock")
		case 180:
			pre = append(pre, "hflip,vflip")
		case 270:
			pre = append(pre, "transpose=cclock")
		}
	}
	var b strings.Builder
	b.WriteString("[0:v:0]")
	for _, p := range pre {
		b.WriteString(p + ",")
	}
	fmt.Fprintf(&b, "split=%d", len(rungs))
	for i := range rungs {
		fmt.Fprintf(&b, "[s%d]", i)
	}
	for i, r := range rungs {
		fmt.Fprintf(&b, ";[s%d]", i)
		if r.LimitFPS && r.FPS > 0 {
			fmt.Fprintf(&b, "fps=%s,", strconv.FormatFloat(r.FPS, 'f', -1, 64))
		}
		fmt.Fprintf(&b, "scale=w=%d:h=%d,setsar=1", r.Width, r.Height)
		if t := enc.FilterTail(); t != "" {
			b.WriteString("," + t)
		}
		fmt.Fprintf(&b, "[v%d]", i)
	}
	return b.String()
}

// doubleBitrate gives a VBV buffer of two seconds at the peak rate: loose
// enough for quality, tight enough that a segment's size stays near
// BANDWIDTH.
func doubleBitrate(s string) string {
	v, err := ParseBitrate(s)
	if err != nil {
		return s
	}
	return strconv.FormatInt(2*v/1000, 10) + "k"
}
