package vod

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/streamd/streamd/transcode"
)

// Output layout, relative to the output folder.
const (
	MasterPlaylist = "index.m3u8"
	DASHManifest   = "manifest.mpd"
	PosterFile     = "poster.jpg"
	ThumbnailsFile = "thumbnails.jpg"
	ThumbnailsVTT  = "thumbnails.vtt"
	SubtitlesDir   = "subs"
	// ffmpegMaster is the dash muxer's own HLS master, replaced by ours
	// (it has no LANGUAGE, NAME or subtitles) and deleted.
	ffmpegMaster = "ffmpeg-master.m3u8"
)

// RepDir is the folder of representation n: its init segment, media
// segments and HLS media playlist.
func RepDir(n int) string { return "r" + strconv.Itoa(n) }

// PackageArgs builds the one ffmpeg run that makes every rendition: the
// input decoded once (deinterlaced and rotated once, before the split),
// scaled per rung, every rung encoded with keyframes on the same segment
// grid, each audio language encoded to AAC, all of it written by the dash
// muxer as CMAF fMP4 segments with a DASH MPD and, with hls_playlist, an
// HLS media playlist per representation over the same files. The same
// run cuts the thumbnail sprite sheet from the decoded frames and
// extracts text subtitles to WebVTT, so the input is read once.
//
// dir is the output folder; progressFD the descriptor for -progress.
func PackageArgs(p *Plan, input, dir string, enc transcode.Encoder, progressFD int) []string {
	seg := p.SegmentDuration.Seconds()
	segStr := strconv.FormatFloat(seg, 'f', -1, 64)
	a := []string{"-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning",
		"-progress", "pipe:" + strconv.Itoa(progressFD), "-y"}
	a = append(a, enc.GlobalArgs()...)
	// The filter graph applies the rotation itself (transpose, planned by
	// transcode.Plan): ffmpeg's autorotate would turn it a second time.
	a = append(a, "-noautorotate", "-i", input)

	nv := len(p.Video)
	if nv > 0 {
		a = append(a, "-filter_complex", filterGraph(p, enc))
		for i := range p.Video {
			a = append(a, "-map", fmt.Sprintf("[v%d]", i))
		}
	}
	for _, t := range p.Audio {
		a = append(a, "-map", "0:"+strconv.Itoa(t.Index))
	}
	for i, r := range p.Video {
		gop := int(math.Round(seg * r.FPS))
		a = append(a, enc.StreamArgs(i, r, gop)...)
		mb := r.MaxBitrate
		if mb == "" {
			mb = r.VideoBitrate
		}
		v := func(name string) string { return "-" + name + ":v:" + strconv.Itoa(i) }
		a = append(a,
			v("b"), r.VideoBitrate, v("maxrate"), mb, v("bufsize"), doubleBitrate(mb),
			// Constant frame rate (a VFR phone clip gets duplicated frames,
			// never dropped ones beyond the rung's cap): segment durations
			// and the GOP in frames only line up at a constant rate.
			v("r"), rateString(r.FPS), v("fps_mode"), "cfr",
			// Keyframes on the segment grid, the same frames in every rung,
			// so every representation is cut at the same instants.
			v("force_key_frames"), "expr:gte(t,n_forced*"+segStr+")",
		)
	}
	if len(p.Audio) > 0 {
		a = append(a, "-c:a", "aac", "-b:a", p.AudioCodec.Bitrate,
			"-ar", strconv.Itoa(p.AudioCodec.SampleRate), "-ac", strconv.Itoa(p.AudioCodec.Channels))
		for i, t := range p.Audio {
			// The MPD's lang and our HLS LANGUAGE come from this tag.
			a = append(a, "-metadata:s:a:"+strconv.Itoa(i), "language="+t.Language)
		}
	}
	// No chapters or global tags in the segments: they would only repeat
	// in every init segment.
	a = append(a, "-map_metadata", "-1", "-map_chapters", "-1")
	a = append(a, "-f", "dash",
		"-seg_duration", segStr,
		"-use_template", "1", "-use_timeline", "1",
		"-dash_segment_type", "mp4",
		"-hls_playlist", "1", "-hls_master_name", ffmpegMaster,
		"-adaptation_sets", adaptationSets(nv, len(p.Audio)),
		"-init_seg_name", "r$RepresentationID$/init.mp4",
		"-media_seg_name", "r$RepresentationID$/seg-$Number%05d$.m4s",
		filepath.Join(dir, DASHManifest))
	if nv > 0 && p.Thumbnails.Count > 0 {
		a = append(a, "-map", "[thumbs]", "-frames:v", "1", "-q:v", "5", "-update", "1",
			filepath.Join(dir, ThumbnailsFile))
	}
	for _, s := range p.Subtitles {
		a = append(a, "-map", "0:"+strconv.Itoa(s.Index), "-c:s", "webvtt", "-f", "webvtt",
			filepath.Join(dir, SubtitlesDir, s.Name+".vtt"))
	}
	return a
}

// adaptationSets puts every video rung in one set (players switch within
// a set) and each audio language in its own (players choose a language
// by set).
func adaptationSets(nv, na int) string {
	var sets []string
	id := 0
	if nv > 0 {
		sets = append(sets, "id=0,streams=v")
		id++
	}
	for i := range na {
		sets = append(sets, fmt.Sprintf("id=%d,streams=%d", id, nv+i))
		id++
	}
	return strings.Join(sets, " ")
}

// preFilters run once before the split: deinterlace, then rotate.
func preFilters(p *Plan) []string {
	var pre []string
	if len(p.Video) == 0 {
		return nil
	}
	if p.Video[0].Deinterlace {
		// deint=interlaced: only frames flagged interlaced, so progressive
		// stretches of a mixed source stay sharp.
		pre = append(pre, "yadif=deint=interlaced")
	}
	switch p.Video[0].Rotation {
	case 90:
		pre = append(pre, "transpose=clock")
	case 180:
		pre = append(pre, "hflip,vflip")
	case 270:
		pre = append(pre, "transpose=cclock")
	}
	return pre
}

// filterGraph: one decode, one split per rung plus one for the sprite
// sheet. No setsar after scale: scale already sets the sample aspect that
// keeps the display aspect through the even-size rounding (854x480 next
// to 1280x720 gets 1280:1281), and the dash muxer refuses an adaptation
// set whose rungs differ in display aspect — setsar=1 would make them.
func filterGraph(p *Plan, enc transcode.Encoder) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[0:%d]", p.Media.Video.Index)
	for _, f := range preFilters(p) {
		b.WriteString(f + ",")
	}
	thumbs := p.Thumbnails.Count > 0
	n := len(p.Video)
	if thumbs {
		n++
	}
	fmt.Fprintf(&b, "split=%d", n)
	for i := range n {
		fmt.Fprintf(&b, "[s%d]", i)
	}
	for i, r := range p.Video {
		fmt.Fprintf(&b, ";[s%d]", i)
		if r.LimitFPS && r.FPS > 0 {
			fmt.Fprintf(&b, "fps=%s,", rateString(r.FPS))
		}
		fmt.Fprintf(&b, "scale=w=%d:h=%d", r.Width, r.Height)
		if t := enc.FilterTail(); t != "" {
			b.WriteString("," + t)
		}
		fmt.Fprintf(&b, "[v%d]", i)
	}
	if thumbs {
		t := p.Thumbnails
		fmt.Fprintf(&b, ";[s%d]fps=1/%s,scale=w=%d:h=%d,setsar=1,tile=%dx%d[thumbs]", len(p.Video),
			strconv.FormatFloat(t.Interval.Seconds(), 'f', -1, 64), t.Width, t.Height, t.Cols, t.Rows)
	}
	return b.String()
}

// PosterArgs grabs one frame at p.Poster.At: a separate, cheap run (the
// seek lands on the keyframe before, then decodes a few frames) rather
// than one more branch of the main graph, which would have to decode up
// to that point before it could finish.
func PosterArgs(p *Plan, input, dir string) []string {
	vf := append(preFilters(p), fmt.Sprintf("scale=w=%d:h=%d", p.Poster.Width, p.Poster.Height), "setsar=1")
	return []string{"-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning", "-y",
		"-noautorotate", "-ss", strconv.FormatFloat(p.Poster.At.Seconds(), 'f', 3, 64), "-i", input,
		"-map", "0:" + strconv.Itoa(p.Media.Video.Index), "-frames:v", "1", "-vf", strings.Join(vf, ","),
		"-q:v", "3", "-update", "1", filepath.Join(dir, PosterFile)}
}

// doubleBitrate gives a VBV buffer of two seconds at the peak rate.
func doubleBitrate(s string) string {
	v, err := transcode.ParseBitrate(s)
	if err != nil {
		return s
	}
	return strconv.FormatInt(2*v/1000, 10) + "k"
}
