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

# --- VOD input matrix (`streamd transcode`, vod package tests). Tiny on
# purpose: 2-3 s, at most 320 px on the long side, so the whole matrix
# transcodes in seconds on two cores.

# Portrait phone video: coded 320x180 landscape with a display matrix that
# turns it into a 180x320 portrait picture (stream copy: re-encoding would
# apply and drop the rotation).
ff -f lavfi -i "testsrc2=size=320x180:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=44100" \
   -t 2 -c:v libx264 -preset veryfast -pix_fmt yuv420p -b:v 150k -g 30 -c:a aac -b:a 32k -ac 1 vod_tmp.mp4
ff -i vod_tmp.mp4 -c copy -metadata:s:v:0 rotate=90 vod_portrait_rotated.mp4
rm -f vod_tmp.mp4

# Variable frame rate: 30 fps with frames 3-5 of every 10 dropped and the
# timestamps kept (r_frame_rate 30, avg_frame_rate 21).
ff -f lavfi -i "testsrc2=size=320x180:rate=30" -f lavfi -i "sine=frequency=500:sample_rate=48000" \
   -t 3 -vf "select='not(between(mod(n\,10)\,3\,5))'" -fps_mode vfr -c:v libx264 -preset veryfast -pix_fmt yuv420p -b:v 150k \
   -c:a aac -b:a 32k vod_vfr.mp4

# Interlaced MPEG-2 in MPEG-TS (top field first, 25i) with MP2 audio: a
# broadcast recording.
ff -f lavfi -i "testsrc2=size=320x240:rate=50" -f lavfi -i "sine=frequency=600:sample_rate=48000" \
   -t 2 -vf "tinterlace=interleave_top,fieldorder=tff" -c:v mpeg2video -flags +ilme+ildct -top 1 -b:v 400k -g 12 \
   -c:a mp2 -b:a 64k -f mpegts vod_interlaced_mpeg2.ts

# Audio only (mono 44.1 kHz: normalised to stereo 48 kHz) and video only.
ff -f lavfi -i "sine=frequency=700:sample_rate=44100" -t 2 -c:a aac -b:a 32k -ac 1 vod_audio_only.m4a
ff -f lavfi -i "testsrc2=size=320x180:rate=25" -t 2 -c:v libx264 -preset veryfast -pix_fmt yuv420p -b:v 150k -g 50 vod_video_only.mp4

# Two audio languages (English stereo, French 5.1: downmixed) and an
# English SubRip subtitle track, in Matroska.
printf '1\n00:00:00,300 --> 00:00:01,200\nHello\n\n2\n00:00:01,500 --> 00:00:02,500\nWorld\n' > vod_tmp.srt
ff -f lavfi -i "testsrc2=size=320x180:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
   -f lavfi -i "sine=frequency=880:sample_rate=48000" -i vod_tmp.srt -t 3 \
   -map 0 -map 1 -map 2 -map 3 -c:v libx264 -preset veryfast -pix_fmt yuv420p -b:v 150k -g 50 \
   -c:a aac -b:a 32k -filter:a:1 "aformat=channel_layouts=5.1" -c:s srt \
   -metadata:s:a:0 language=eng -metadata:s:a:1 language=fra -metadata:s:s:0 language=eng vod_multilang_subs.mkv
rm -f vod_tmp.srt

# Broken inputs. Truncated: an MP4 written without faststart (the index,
# moov, comes last, as cameras and ffmpeg write it) cut in half, as an
# interrupted upload leaves it. Empty: zero bytes.
ff -f lavfi -i "testsrc2=size=320x180:rate=25" -t 2 -c:v libx264 -preset veryfast -pix_fmt yuv420p -b:v 150k vod_tmp.mp4
head -c $(( $(stat -c %s vod_tmp.mp4) / 2 )) vod_tmp.mp4 > vod_truncated.mp4
rm -f vod_tmp.mp4
: > vod_empty.mp4

# Not media at all: for tests of clear errors on bad input.
printf 'this is not a video file\n' > not_media.txt

# --- More VOD inputs: the other codecs and containers, and 4K.
# HEVC (tagged hvc1) + AAC in MP4: 3 s of 640x360p30, 2 s GOP.
ff -f lavfi -i "testsrc2=size=640x360:rate=30" -f lavfi -i "sine=frequency=520:sample_rate=48000" \
   -t 3 -c:v libx265 -preset ultrafast -pix_fmt yuv420p -b:v 200k -x265-params "keyint=60:min-keyint=60:scenecut=0:log-level=error" \
   -tag:v hvc1 -c:a aac -b:a 48k -ac 2 -movflags +faststart vod_hevc_aac.mp4

# VP9 + Opus in WebM: 3 s of 640x360p30 (realtime mode keeps the encode cheap).
ff -f lavfi -i "testsrc2=size=640x360:rate=30" -f lavfi -i "sine=frequency=580:sample_rate=48000" \
   -t 3 -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 200k -g 60 -pix_fmt yuv420p \
   -c:a libopus -b:a 48k -ac 2 vod_vp9_opus.webm

# 4K: 1 s of 3840x2160p30 H.264 + AAC at a low bitrate (a few hundred KB),
# for the 2160p rung of the VOD ladder.
ff -f lavfi -i "testsrc2=size=3840x2160:rate=30" -f lavfi -i "sine=frequency=620:sample_rate=48000" \
   -t 1 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -b:v 2000k -maxrate 2500k -bufsize 2500k -g 30 \
   -c:a aac -b:a 48k -ac 2 -movflags +faststart vod_4k.mp4

ls -l
