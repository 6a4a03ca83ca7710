package vod

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// describeJob renders a Job for the golden files.
func describeJob(j Job) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ladder %s\n", j.Ladder.Name)
	for _, r := range j.Ladder.Rungs {
		fmt.Fprintf(&b, "  %-6s %dx%d video %s peak %s framerate %g profile %s preset %s\n", r.Name, r.Width, r.Height,
			r.VideoBitrate, r.MaxBitrate, r.Framerate, r.Profile, r.Preset)
	}
	a := j.Ladder.Audio
	fmt.Fprintf(&b, "audio AAC %s %d Hz %d channels\n", a.Bitrate, a.SampleRate, a.Channels)
	fmt.Fprintf(&b, "segment_duration %s\nthumbnail_interval %s\nnotes:\n", j.SegmentDuration, j.ThumbnailInterval)
	for _, n := range j.Notes {
		fmt.Fprintf(&b, "  %s\n", n)
	}
	return b.String()
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestMediaConvertGolden converts the reference solution's shapes: the
// "VOD on AWS" HLS job template (four QVBR H.264 outputs with
// NameModifier _1080p … _360p, AAC 128k/96k 48 kHz, a FRAME_CAPTURE
// thumbnails group) and a CreateJob request with a CMAF group.
func TestMediaConvertGolden(t *testing.T) {
	for _, name := range []string{"mediaconvert_vod_on_aws_template", "mediaconvert_create_job"} {
		t.Run(name, func(t *testing.T) {
			j, err := ParseJob(readTestdata(t, name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name+".golden", describeJob(j))
		})
	}
}

// The same Settings read bare, inside a CreateJob request and inside the
// get-job / get-job-template answers give the same ladder.
func TestMediaConvertShapes(t *testing.T) {
	var tmpl map[string]any
	if err := json.Unmarshal(readTestdata(t, "mediaconvert_vod_on_aws_template.json"), &tmpl); err != nil {
		t.Fatal(err)
	}
	settings := tmpl["Settings"]
	want, err := ParseJob(readTestdata(t, "mediaconvert_vod_on_aws_template.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string]any{
		"bare Settings": settings,
		"CreateJob":     map[string]any{"Role": "arn:aws:iam::1:role/MC", "Settings": settings, "UserMetadata": map[string]any{"a": "b"}},
		"get-job":       map[string]any{"Job": map[string]any{"Arn": "arn:x", "Status": "COMPLETE", "Settings": settings}},
		"get-template":  map[string]any{"JobTemplate": tmpl},
	} {
		data, _ := json.Marshal(doc)
		j, err := ParseJob(data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if fmt.Sprint(j.Ladder, j.SegmentDuration, j.ThumbnailInterval) != fmt.Sprint(want.Ladder, want.SegmentDuration, want.ThumbnailInterval) {
			t.Errorf("%s: %+v, want %+v", name, j.Ladder, want.Ladder)
		}
		if name == "bare Settings" && !strings.HasPrefix(strings.Join(j.Notes, "\n"), "OutputGroups[") {
			t.Errorf("bare Settings: paths should start at OutputGroups: %q", j.Notes)
		}
	}
	// Our own format is still ours, also capitalised (encoding/json
	// matches keys case-insensitively): only MediaConvert's own top-level
	// keys select the MediaConvert reader.
	for _, own := range []string{`{"ladder":"default"}`, `{"Ladder":"default"}`} {
		if j, err := ParseJob([]byte(own)); err != nil || len(j.Notes) != 0 || j.Ladder.Name != "default" {
			t.Errorf("own format %s: %+v %v", own, j, err)
		}
	}
}

// mutate loads the reference template, applies f to its Settings and
// returns the document.
func mutate(t *testing.T, f func(s map[string]any)) []byte {
	t.Helper()
	var tmpl map[string]any
	if err := json.Unmarshal(readTestdata(t, "mediaconvert_vod_on_aws_template.json"), &tmpl); err != nil {
		t.Fatal(err)
	}
	f(tmpl["Settings"].(map[string]any))
	data, err := json.Marshal(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Small accessors into the generic template.
func mcM(v any, keys ...any) map[string]any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v.(map[string]any)
}

func hlsOutput(s map[string]any, i int) map[string]any {
	return mcM(s, "OutputGroups", 0, "Outputs", i)
}

func TestMediaConvertRefused(t *testing.T) {
	const out1 = "Settings.OutputGroups[0].Outputs[1]"
	for _, c := range []struct {
		name string
		edit func(s map[string]any)
		want []string
	}{
		{"H.265", func(s map[string]any) {
			mcM(hlsOutput(s, 1), "VideoDescription")["CodecSettings"] = map[string]any{"Codec": "H_265",
				"H265Settings": map[string]any{"RateControlMode": "QVBR", "MaxBitrate": 5000000}}
		}, []string{out1 + ".VideoDescription.CodecSettings.H265Settings: not supported (streamd encodes H.264)"}},
		{"VP9 without settings", func(s map[string]any) {
			mcM(hlsOutput(s, 1), "VideoDescription")["CodecSettings"] = map[string]any{"Codec": "VP9"}
		}, []string{out1 + `.VideoDescription.CodecSettings.Codec: "VP9" not supported (streamd encodes H.264: H_264)`}},
		{"unknown group type", func(s map[string]any) {
			mcM(s, "OutputGroups", 0, "OutputGroupSettings")["Type"] = "RTMP_GROUP_SETTINGS"
		}, []string{`Settings.OutputGroups[0].OutputGroupSettings.Type: unknown output group type "RTMP_GROUP_SETTINGS"`}},
		{"Smooth group", func(s map[string]any) {
			mcM(s, "OutputGroups", 0, "OutputGroupSettings")["Type"] = "MS_SMOOTH_GROUP_SETTINGS"
		}, []string{"Settings.OutputGroups[0].OutputGroupSettings.Type: MS_SMOOTH_GROUP_SETTINGS not supported"}},
		{"MP4 file group", func(s map[string]any) {
			mcM(s, "OutputGroups", 1, "Outputs", 0, "VideoDescription", "CodecSettings")["Codec"] = "H_264"
		}, []string{"Settings.OutputGroups[1].OutputGroupSettings.Type: FILE_GROUP_SETTINGS with video files not supported"}},
		{"captions", func(s map[string]any) {
			hlsOutput(s, 0)["CaptionDescriptions"] = []any{map[string]any{"CaptionSelectorName": "Captions Selector 1",
				"DestinationSettings": map[string]any{"DestinationType": "WEBVTT"}}}
			s["Inputs"] = []any{map[string]any{"FileInput": "s3://b/m.mov", "CaptionSelectors": map[string]any{
				"Captions Selector 1": map[string]any{"SourceSettings": map[string]any{"SourceType": "SRT"}}}}}
		}, []string{
			"Settings.OutputGroups[0].Outputs[0].CaptionDescriptions: not supported (captions are not supported",
			"Settings.Inputs[0].CaptionSelectors: not supported (captions are not read from selectors",
		}},
		{"DRM", func(s map[string]any) {
			mcM(s, "OutputGroups", 0, "OutputGroupSettings", "HlsGroupSettings")["Encryption"] = map[string]any{
				"EncryptionMethod": "SAMPLE_AES", "Type": "SPEKE", "SpekeKeyProvider": map[string]any{"Url": "https://keys.example"}}
		}, []string{"Settings.OutputGroups[0].OutputGroupSettings.HlsGroupSettings.Encryption: not supported (DRM/encryption is not supported"}},
		{"InputClipping", func(s map[string]any) {
			s["Inputs"] = []any{map[string]any{"FileInput": "s3://b/m.mov",
				"InputClippings": []any{map[string]any{"StartTimecode": "00:00:10:00", "EndTimecode": "00:01:00:00"}}}}
		}, []string{"Settings.Inputs[0].InputClippings: not supported (clipping is not supported"}},
		{"ImageInserter", func(s map[string]any) {
			mcM(hlsOutput(s, 2), "VideoDescription")["VideoPreprocessors"] = map[string]any{"ImageInserter": map[string]any{
				"InsertableImages": []any{map[string]any{"ImageInserterInput": "s3://b/logo.png", "Layer": 0}}}}
		}, []string{"Settings.OutputGroups[0].Outputs[2].VideoDescription.VideoPreprocessors.ImageInserter: not supported (image overlays"}},
		{"two inputs", func(s map[string]any) {
			s["Inputs"] = []any{map[string]any{"FileInput": "s3://b/a.mov"}, map[string]any{"FileInput": "s3://b/b.mov"}}
		}, []string{"Settings.Inputs: 2 inputs: streamd transcodes one input file (no stitching)"}},
		{"5.1 audio", func(s map[string]any) {
			mcM(hlsOutput(s, 0), "AudioDescriptions", 0, "CodecSettings", "AacSettings")["CodingMode"] = "CODING_MODE_5_1"
		}, []string{`Settings.OutputGroups[0].Outputs[0].AudioDescriptions[0].CodecSettings.AacSettings.CodingMode: "CODING_MODE_5_1" not supported`}},
		{"AC-3 audio", func(s map[string]any) {
			mcM(hlsOutput(s, 0), "AudioDescriptions", 0)["CodecSettings"] = map[string]any{"Codec": "AC3",
				"Ac3Settings": map[string]any{"Bitrate": 384000}}
		}, []string{"Settings.OutputGroups[0].Outputs[0].AudioDescriptions[0].CodecSettings.Ac3Settings: not supported (streamd encodes AAC)"}},
		{"interlaced output", func(s map[string]any) {
			mcM(hlsOutput(s, 3), "VideoDescription", "CodecSettings", "H264Settings")["InterlaceMode"] = "TOP_FIELD"
		}, []string{`Settings.OutputGroups[0].Outputs[3].VideoDescription.CodecSettings.H264Settings.InterlaceMode: "TOP_FIELD" not supported`}},
		{"10-bit profile", func(s map[string]any) {
			mcM(hlsOutput(s, 0), "VideoDescription", "CodecSettings", "H264Settings")["CodecProfile"] = "HIGH_10BIT"
		}, []string{`Settings.OutputGroups[0].Outputs[0].VideoDescription.CodecSettings.H264Settings.CodecProfile: "HIGH_10BIT" not supported`}},
		{"GOP does not divide the segment", func(s map[string]any) {
			mcM(hlsOutput(s, 0), "VideoDescription", "CodecSettings", "H264Settings")["GopSize"] = 4
		}, []string{"Settings.OutputGroups[0].Outputs[0].VideoDescription.CodecSettings.H264Settings.GopSize: SegmentLength 6 s is not a whole number of 4 s GOPs"}},
		{"GOP in frames longer than the segment", func(s map[string]any) {
			h := mcM(hlsOutput(s, 0), "VideoDescription", "CodecSettings", "H264Settings")
			h["GopSize"], h["GopSizeUnits"] = 240, "FRAMES" // 8 s at 29.97
		}, []string{"GopSize: a GOP of 8.008 s is longer than SegmentLength 6 s"}},
		{"MinSegmentLength above SegmentLength", func(s map[string]any) {
			mcM(s, "OutputGroups", 0, "OutputGroupSettings", "HlsGroupSettings")["MinSegmentLength"] = 8
		}, []string{"HlsGroupSettings.MinSegmentLength: 8 s is longer than SegmentLength 6 s"}},
		{"output preset", func(s map[string]any) {
			hlsOutput(s, 0)["Preset"] = "System-Avc_16x9_1080p_29_97fps_8500kbps"
		}, []string{`Settings.OutputGroups[0].Outputs[0].Preset: output preset "System-Avc_16x9_1080p_29_97fps_8500kbps" cannot be read`}},
		{"typo", func(s map[string]any) {
			g := mcM(s, "OutputGroups", 0, "OutputGroupSettings", "HlsGroupSettings")
			g["SegmentLenght"] = 4
		}, []string{"Settings.OutputGroups[0].OutputGroupSettings.HlsGroupSettings.SegmentLenght: not supported by streamd"}},
		{"duplicate NameModifier", func(s map[string]any) {
			hlsOutput(s, 1)["NameModifier"] = "_1080p"
		}, []string{`Settings.OutputGroups[0].Outputs[1]: rendition name "1080p" is also the name of Settings.OutputGroups[0].Outputs[0]`}},
		{"missing Height", func(s map[string]any) {
			delete(mcM(hlsOutput(s, 2), "VideoDescription"), "Height")
		}, []string{"Settings.OutputGroups[0].Outputs[2].VideoDescription.Height: missing"}},
		{"CBR without Bitrate", func(s map[string]any) {
			mcM(hlsOutput(s, 2), "VideoDescription", "CodecSettings", "H264Settings")["RateControlMode"] = "CBR"
		}, []string{"Settings.OutputGroups[0].Outputs[2].VideoDescription.CodecSettings.H264Settings.Bitrate: a positive bitrate in bits/s is needed for CBR"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseJob(mutate(t, c.edit))
			if err == nil {
				t.Fatal("accepted")
			}
			if ErrorCode(err) != CodeInvalidJob {
				t.Errorf("code %s", ErrorCode(err))
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// Every unsupported setting is in the one error, not just the first.
func TestMediaConvertAllProblemsInOneError(t *testing.T) {
	data := mutate(t, func(s map[string]any) {
		mcM(hlsOutput(s, 1), "VideoDescription")["CodecSettings"] = map[string]any{"Codec": "H_265", "H265Settings": map[string]any{}}
		hlsOutput(s, 0)["CaptionDescriptions"] = []any{}
		mcM(s, "OutputGroups", 0, "OutputGroupSettings", "HlsGroupSettings")["Encryption"] = map[string]any{}
		s["Inputs"] = []any{map[string]any{"InputClippings": []any{}, "ImageInserter": map[string]any{}}}
		s["MotionImageInserter"] = map[string]any{}
		s["NielsenConfiguration"] = map[string]any{}
	})
	_, err := ParseJob(data)
	if err == nil {
		t.Fatal("accepted")
	}
	golden(t, "mediaconvert_refused.golden", strings.ReplaceAll(Reason(err), "; ", ";\n")+"\n")
	if !strings.Contains(err.Error(), "(7 problems)") {
		t.Errorf("want 7 problems: %v", err)
	}
}

// A DASH or CMAF group next to the HLS group is the same output (one set of
// CMAF segments, both manifests): accepted when the ladders match, refused
// with both groups named when they do not.
func TestMediaConvertGroupsCombined(t *testing.T) {
	dash := func(s map[string]any, change bool) {
		hls := s["OutputGroups"].([]any)[0].(map[string]any)
		var outs []any
		for _, o := range hls["Outputs"].([]any) {
			vd := mcM(o, "VideoDescription")
			out := map[string]any{"ContainerSettings": map[string]any{"Container": "MPD"},
				"NameModifier": "_dash" + hlsName(o), "VideoDescription": vd}
			outs = append(outs, out)
		}
		outs = append(outs, map[string]any{"ContainerSettings": map[string]any{"Container": "MPD"}, "NameModifier": "_audio",
			"AudioDescriptions": mcM(outs[0], "VideoDescription") != nil && true})
		outs[len(outs)-1].(map[string]any)["AudioDescriptions"] = hlsOutput(s, 0)["AudioDescriptions"]
		if change {
			b, _ := json.Marshal(mcM(outs[2], "VideoDescription"))
			var vd map[string]any
			json.Unmarshal(b, &vd)
			mcM(vd, "CodecSettings", "H264Settings")["MaxBitrate"] = 3000000
			outs[2].(map[string]any)["VideoDescription"] = vd
		}
		s["OutputGroups"] = append(s["OutputGroups"].([]any), map[string]any{"Name": "DASH ISO", "Outputs": outs,
			"OutputGroupSettings": map[string]any{"Type": "DASH_ISO_GROUP_SETTINGS", "DashIsoGroupSettings": map[string]any{
				"SegmentLength": 6, "FragmentLength": 2, "MpdProfile": "MAIN_PROFILE", "Destination": "s3://b/dash/"}}})
	}
	j, err := ParseJob(mutate(t, func(s map[string]any) { dash(s, false) }))
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Ladder.Rungs) != 4 || j.Ladder.Rungs[0].Name != "1080p" {
		t.Errorf("ladder %+v", j.Ladder.Rungs)
	}
	if !strings.Contains(strings.Join(j.Notes, "\n"), "Settings.OutputGroups: several streaming groups: streamd makes one set of CMAF segments") {
		t.Errorf("notes %q", j.Notes)
	}
	_, err = ParseJob(mutate(t, func(s map[string]any) { dash(s, true) }))
	if err == nil || !strings.Contains(err.Error(), "Settings.OutputGroups[2].Outputs[2]: rendition 540p 2804k/3000k 29.97fps high has no twin in Settings.OutputGroups[0]") ||
		!strings.Contains(err.Error(), "Settings.OutputGroups[0].Outputs[2]: rendition 540p 3271k/3500k 29.97fps high has no twin in Settings.OutputGroups[2]") {
		t.Errorf("mismatched DASH ladder: %v", err)
	}
	_, err = ParseJob(mutate(t, func(s map[string]any) {
		dash(s, false)
		mcM(s, "OutputGroups", 2, "OutputGroupSettings", "DashIsoGroupSettings")["SegmentLength"] = 4
	}))
	if err == nil || !strings.Contains(err.Error(), "DashIsoGroupSettings.SegmentLength: 4 s differs from 6 s in Settings.OutputGroups[0]") {
		t.Errorf("mismatched segment length: %v", err)
	}
}

func hlsName(o any) string { return o.(map[string]any)["NameModifier"].(string) }

// A CreateJob that names a template instead of inlining it is refused: the
// template lives in the AWS account.
func TestMediaConvertTemplateReference(t *testing.T) {
	_, err := ParseJob([]byte(`{"Role":"arn:aws:iam::1:role/MC","JobTemplate":"vod_Ott_1080p","Settings":{"Inputs":[{"FileInput":"s3://b/m.mov"}]}}`))
	if err == nil || !strings.Contains(err.Error(), `JobTemplate: the job refers to template "vod_Ott_1080p", which streamd cannot read`) {
		t.Errorf("%v", err)
	}
}

// LoadJob prints the notes on stderr (the CLI's stderr), one line each,
// prefixed with the file.
func TestMediaConvertLoadJobNotes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "job.json")
	os.WriteFile(path, readTestdata(t, "mediaconvert_create_job.json"), 0o644)
	j, err := LoadJob(path)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(j.Notes, "\n")
	if !strings.Contains(all, "Settings.OutputGroups[0].OutputGroupSettings.CmafGroupSettings.Destination: no effect: the output folder is --out DIR") ||
		!strings.Contains(all, "{Role, Queue, AccelerationSettings, UserMetadata}: AWS account/queue setting") {
		t.Errorf("notes:\n%s", all)
	}
}
