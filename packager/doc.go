// Package packager turns live publications into CMAF HLS in the object
// store: one init segment per publication ("run"), one moof+mdat fragment
// per segment, a sliding-window media playlist and a one-variant master.
//
// The work is split in three layers so later features slot in without a
// rewrite:
//
//   - segmenter (segmenter.go) is pure: media units in, Segment values out
//     (fragment bytes, start and duration in the reference track's
//     timescale and as time.Duration, keyframe flag). It knows nothing about
//     keys, playlists or time of day, and runs on the publisher goroutine.
//   - the playlist writer (playlist.go) is pure as well: a list of
//     playlistSegment values in, HLS text out.
//   - channel (channel.go) glues them: per channel a bounded queue and one
//     writer goroutine that stores segments, keeps the window, renders and
//     stores playlists, deletes expired objects, and owns the publication
//     lifecycle (discontinuities, grace period, ENDLIST).
//
// LL-HLS: the segmenter would cut a fragment every part target (at any
// sample for video, keyframe-flagged when it starts with one) and group
// parts into segments at keyframes; Segment gains a Parts slice (each a
// fragment with its own duration and independence flag) whose bytes,
// concatenated, are the segment. playlistSegment gains the same Parts list
// and the writer renders EXT-X-PART / EXT-X-PRELOAD-HINT /
// EXT-X-SERVER-CONTROL from it; the channel writer stores each part as it
// arrives instead of once per segment. Nothing in the timing model changes.
//
// DASH: an MPD over the same objects needs only what Segment already
// carries: the init key per run (one Period per run), and per segment its
// StartTS/DurationTS in the reference timescale for a SegmentTimeline with
// $Number$ = media sequence. A second renderer next to the HLS one, fed the
// same window, is enough; CMAF fragments are shared by both.
package packager
