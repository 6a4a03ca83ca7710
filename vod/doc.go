// Package vod is the on-demand pipeline: one media file in, a folder of
// CMAF segments with an HLS master and a DASH MPD out, checked before it
// is called ready. `streamd transcode INPUT --out DIR` runs it without a
// server; the VOD job worker will run the same Transcode.
//
// Steps, each testable on its own:
//
//   - probe.go: ffprobe → Media (codecs, size, frame rate and VFR,
//     field order, rotation, SAR; audio languages and channels; subtitle
//     codecs), with a one-line *Error for empty, non-media, truncated,
//     stream-less and undecodable input;
//   - job.go, plan.go: the job (our JSON format: a ladder name or rungs,
//     segment and thumbnail intervals; or an AWS MediaConvert job,
//     mediaconvert.go, docs/mediaconvert.md) fitted to the input with
//     transcode.Plan — no upscaling, aspect and rotation kept, interlaced
//     deinterlaced, frame rate capped and made constant — plus one audio
//     rendition per language, text subtitles, poster and sprite layout;
//   - args.go: pure functions from the plan to ffmpeg's arguments
//     (golden-tested in testdata/);
//   - run.go: ffmpeg as a transcode.Instance (own process group) with
//     -progress, then the manifests; qa.go: the QA step.
//
// Why ffmpeg's dash muxer with -hls_playlist rather than the hls muxer
// and an MPD of our own: it writes one set of fMP4 segments and both
// manifests' segment lists over them in the same pass, with codec strings
// taken from the encoded parameter sets and a SegmentTimeline that is
// exact, so the two manifests cannot disagree about a segment. What it
// lacks is small and added afterwards: our HLS master (LANGUAGE, NAME,
// CHANNELS, measured BANDWIDTH, FRAME-RATE, subtitles group), the media
// playlists moved into their folders as VOD playlists, and the WebVTT
// subtitles as text adaptation sets in the MPD.
//
// Output layout of DIR:
//
//	index.m3u8                 HLS master (ours)
//	manifest.mpd               DASH MPD (ffmpeg's + text adaptation sets)
//	r0/ … rN-1/                video renditions, highest first
//	rN/ …                      one audio rendition per language
//	  init.mp4, seg-00001.m4s…, index.m3u8 (HLS media playlist)
//	subs/LANG.vtt, LANG.m3u8   text subtitles (WebVTT + one-segment playlist)
//	poster.jpg                 a frame ~10% in, at the top rendition's size
//	thumbnails.jpg             sprite sheet (10 columns of 160x90 / 90x160)
//	thumbnails.vtt             WebVTT cues pointing at it with #xywh=
//
// rN is the DASH representation id; ffmpeg's segment templates can only
// name folders by it.
package vod
