package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamd/streamd/internal/testenv"
)

// mediaConvertJob is a CreateJob request in the shape of the "VOD on AWS"
// HLS template: H.264 outputs named by NameModifier, AAC 96k/128k 48 kHz,
// QVBR and VBR, a 2 s HLS SegmentLength. The 1080p output is above the
// 360p test input and is dropped (streamd never upscales).
const mediaConvertJob = `{
  "Role": "arn:aws:iam::111122223333:role/MediaConvertRole",
  "Queue": "Default",
  "UserMetadata": {"workflow": "vod"},
  "Settings": {
    "Inputs": [{"FileInput": "s3://vod-source/master.mp4", "AudioSelectors": {"Audio Selector 1": {"DefaultSelection": "DEFAULT"}}}],
    "OutputGroups": [{
      "Name": "Apple HLS",
      "OutputGroupSettings": {"Type": "HLS_GROUP_SETTINGS",
        "HlsGroupSettings": {"SegmentLength": 2, "MinSegmentLength": 0, "Destination": "s3://vod-destination/hls/"}},
      "Outputs": [
        {"NameModifier": "_1080p", "ContainerSettings": {"Container": "M3U8"},
         "VideoDescription": {"Width": 1920, "Height": 1080, "CodecSettings": {"Codec": "H_264", "H264Settings": {
           "RateControlMode": "QVBR", "MaxBitrate": 8500000, "QvbrSettings": {"QvbrQualityLevel": 9},
           "GopSize": 2, "GopSizeUnits": "SECONDS", "CodecProfile": "HIGH", "QualityTuningLevel": "SINGLE_PASS"}}},
         "AudioDescriptions": [{"CodecSettings": {"Codec": "AAC", "AacSettings": {"Bitrate": 128000, "CodingMode": "CODING_MODE_2_0", "SampleRate": 48000}}}]},
        {"NameModifier": "_360p", "ContainerSettings": {"Container": "M3U8"},
         "VideoDescription": {"Width": 640, "Height": 360, "CodecSettings": {"Codec": "H_264", "H264Settings": {
           "RateControlMode": "VBR", "Bitrate": 600000, "MaxBitrate": 642000, "FramerateControl": "SPECIFIED",
           "FramerateNumerator": 30, "FramerateDenominator": 1, "GopSize": 60, "GopSizeUnits": "FRAMES",
           "CodecProfile": "MAIN", "QualityTuningLevel": "SINGLE_PASS"}}},
         "AudioDescriptions": [{"CodecSettings": {"Codec": "AAC", "AacSettings": {"Bitrate": 96000, "CodingMode": "CODING_MODE_2_0", "SampleRate": 48000}}}]},
        {"NameModifier": "_234p", "ContainerSettings": {"Container": "M3U8"},
         "VideoDescription": {"Width": 416, "Height": 234, "CodecSettings": {"Codec": "H_264", "H264Settings": {
           "RateControlMode": "CBR", "Bitrate": 200000, "CodecProfile": "BASELINE", "QualityTuningLevel": "SINGLE_PASS"}}},
         "AudioDescriptions": [{"CodecSettings": {"Codec": "AAC", "AacSettings": {"Bitrate": 96000, "CodingMode": "CODING_MODE_2_0", "SampleRate": 48000}}}]}
      ]
    }]
  }
}`

// TestTranscodeMediaConvertJob runs `streamd transcode --job` with an AWS
// MediaConvert job: the renditions named by NameModifier exist, the notes
// are on stderr, and an unsupported job fails with every problem listed.
func TestTranscodeMediaConvertJob(t *testing.T) {
	testenv.FFmpeg(t)
	testenv.FFprobe(t)
	dir := t.TempDir()
	job := filepath.Join(dir, "mediaconvert.json")
	os.WriteFile(job, []byte(mediaConvertJob), 0o644)
	out := filepath.Join(dir, "out")

	code, stdout, stderr := runTranscode(testenv.Testdata("h264_aac_360p.mp4"), "--out", out, "--job", job)
	notes := stderr
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s\nnotes: %s", code, stdout, stderr, notes)
	}
	// 1080p is above the source and dropped; 360p and 234p are made, named
	// by their NameModifier.
	if !strings.Contains(stdout, "video:     360p 640x360, 234p 416x234\n") || !strings.Contains(stdout, "(AAC 48 kHz stereo)") {
		t.Errorf("summary:\n%s", stdout)
	}
	if strings.Contains(stdout, "1080p") {
		t.Errorf("1080p upscaled:\n%s", stdout)
	}
	for _, f := range []string{"index.m3u8", "manifest.mpd", "r0/index.m3u8", "r1/index.m3u8", "r2/index.m3u8", "poster.jpg", "thumbnails.vtt"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	master, _ := os.ReadFile(filepath.Join(out, "index.m3u8"))
	for _, res := range []string{"RESOLUTION=640x360", "RESOLUTION=416x234"} {
		if !strings.Contains(string(master), res) {
			t.Errorf("master lacks %s:\n%s", res, master)
		}
	}
	// 2 s segments: a 4 s input makes two per rendition.
	media, _ := os.ReadFile(filepath.Join(out, "r0", "index.m3u8"))
	if n := strings.Count(string(media), "#EXTINF:"); n != 2 {
		t.Errorf("%d segments in r0, want 2 (SegmentLength 2):\n%s", n, media)
	}
	for _, want := range []string{
		"note: " + job + ": {Role, Queue, UserMetadata}: AWS account/queue setting, accepted, no effect in streamd\n",
		"note: " + job + ": Settings.OutputGroups[0].OutputGroupSettings.HlsGroupSettings.Destination: no effect: the output folder is --out DIR\n",
	} {
		if !strings.Contains(string(notes), want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}

	// Unsupported settings: exit 1, one line naming each.
	bad := strings.Replace(mediaConvertJob, `"Destination": "s3://vod-destination/hls/"`,
		`"Destination": "s3://vod-destination/hls/", "Encryption": {"EncryptionMethod": "AES128"}`, 1)
	bad = strings.Replace(bad, `"Codec": "H_264", "H264Settings": {
           "RateControlMode": "CBR"`, `"Codec": "H_265", "H265Settings": {
           "RateControlMode": "CBR"`, 1)
	os.WriteFile(job, []byte(bad), 0o644)
	code, _, stderr = runTranscode(testenv.Testdata("h264_aac_360p.mp4"), "--out", filepath.Join(dir, "out2"), "--job", job)
	if code != 1 || strings.Count(stderr, "\n") != 1 ||
		!strings.Contains(stderr, "Settings.OutputGroups[0].OutputGroupSettings.HlsGroupSettings.Encryption: not supported (DRM/encryption") ||
		!strings.Contains(stderr, "Settings.OutputGroups[0].Outputs[2].VideoDescription.CodecSettings.H265Settings: not supported (streamd encodes H.264)") {
		t.Errorf("bad job: exit %d\n%s", code, stderr)
	}
}
