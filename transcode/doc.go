// Package transcode turns one published live stream into a ladder of
// keyframe-aligned H.264 renditions with a single supervised ffmpeg
// process per channel.
//
// The work is layered so each part is testable on its own:
//
//   - ladder.go: the ladder model (the shape the config embeds under
//     `ladders:`), its default and its validation;
//   - plan.go: pure rules that fit a ladder to one source (never upscale,
//     keep the aspect, cap the frame rate, deinterlace);
//   - args.go, encoders.go: pure functions from a plan to ffmpeg's argument
//     list, with the encoders (libx264, NVENC, VAAPI, QSV) behind one
//     strategy interface;
//   - instance.go, supervisor.go, stderr.go, progress.go: one ffmpeg
//     process (own process group, killed and reaped as a group, stderr
//     translated into errors a person can act on) and the loop that
//     restarts it with back-off;
//   - worker.go, tsio.go: the live.Reader that muxes the hub's units into
//     MPEG-TS on ffmpeg's stdin and demuxes every rendition back into
//     media units for a Sink (the packager, once the lead wires it).
//
// Why one process with `split` and the tee muxer: the source is decoded
// once and every rendition is cut from the same decoded frames with the
// same forced-keyframe expression, so keyframes land on the same
// timestamps in every rendition (players switch cleanly and the packager
// cuts every rendition at the same boundaries), and audio is encoded once
// and shared by every rendition.
package transcode
