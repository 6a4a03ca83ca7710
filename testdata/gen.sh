#!/usr/bin/env bash
# Regenerates the small sample clips the tests and the README examples use.
# Every clip has a 2 s GOP (keyframe every 60 frames at 30 fps), so live
# segments of 2 s cut exactly on keyframes. Run from anywhere: bash testdata/gen.sh
set -euo pipefail
cd "$(dirname "$0")"
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }

# 6 s of 1280x720p30 H.264 High + AAC-LC 48 kHz stereo.
ff -f lavfi -i "testsrc2=size=1280x720:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
   -t 6 -c:v libx264 -preset veryfast -profile:v high -pix_fmt yuv420p -b:v 600k -g 60 -keyint_min 60 -sc_threshold 0 \
   -c:a aac -b:a 96k -ac 2 -ar 48000 -movflags +faststart h264_aac_720p.mp4

# 4 s of 640x360p30 H.264 Main + AAC-LC 44.1 kHz: the cheap clip for load benchmarks.
ff -f lavfi -i "testsrc2=size=640x360:rate=30" -f lavfi -i "sine=frequency=660:sample_rate=44100" \
   -t 4 -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p -b:v 300k -g 60 -keyint_min 60 -sc_threshold 0 \
   -c:a aac -b:a 64k -ac 2 -ar 44100 -movflags +faststart h264_aac_360p.mp4

# 4 s of 640x360p30 H.265 + Opus 48 kHz stereo (for RTSP, which carries both).
ff -f lavfi -i "testsrc2=size=640x360:rate=30" -f lavfi -i "sine=frequency=550:sample_rate=48000" \
   -t 4 -c:v libx265 -preset veryfast -pix_fmt yuv420p -b:v 300k -x265-params "keyint=60:min-keyint=60:scenecut=0:log-level=error" \
   -tag:v hvc1 -c:a libopus -b:a 64k -ac 2 -ar 48000 hevc_opus_360p.mkv

# Not media at all: for tests of clear errors on bad input.
printf 'this is not a video file\n' > not_media.txt
ls -l
