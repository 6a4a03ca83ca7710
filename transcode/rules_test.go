package transcode

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaultLadderValid(t *testing.T) {
	l := DefaultLadder()
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	if l.Name != "default" || len(l.Rungs) != 4 || l.Audio != (Audio{Bitrate: "128k", SampleRate: 48000, Channels: 2}) {
		t.Fatalf("default ladder %+v", l)
	}
	var got []string
	for _, r := range l.Rungs {
		got = append(got, r.Name+"="+r.VideoBitrate)
	}
	if want := []string{"1080p=5000k", "720p=3000k", "480p=1200k", "360p=800k"}; !slices.Equal(got, want) {
		t.Fatalf("rungs %v, want %v", got, want)
	}
}

func TestLadderValidateNamesFields(t *testing.T) {
	good := func() Ladder { return DefaultLadder() }
	tests := []struct {
		name  string
		edit  func(*Ladder)
		wants []string
	}{
		{"no name", func(l *Ladder) { l.Name = "" }, []string{"name: must not be empty"}},
		{"no rungs", func(l *Ladder) { l.Rungs = nil }, []string{"rungs: needs at least one rung"}},
		{"bad bitrate", func(l *Ladder) { l.Rungs[1].VideoBitrate = "fast" }, []string{`rungs[1].video_bitrate: "fast" is not a bitrate`}},
		{"max below target", func(l *Ladder) { l.Rungs[0].MaxBitrate = "1000k" }, []string{"rungs[0].max_bitrate: 1000k is below video_bitrate 5000k"}},
		{"odd height", func(l *Ladder) { l.Rungs[2].Height = 481 }, []string{"rungs[2].height: 481 is odd"}},
		{"zero height", func(l *Ladder) { l.Rungs[2].Height = 0 }, []string{"rungs[2].height: must be a positive"}},
		{"dup name", func(l *Ladder) { l.Rungs[3].Name = "720p" }, []string{`rungs[3].name: "720p" is also the name of rungs[1]`}},
		{"slash name", func(l *Ladder) { l.Rungs[0].Name = "a/b" }, []string{"rungs[0].name"}},
		{"profile", func(l *Ladder) { l.Rungs[0].Profile = "high10" }, []string{`rungs[0].profile: "high10"`}},
		{"preset", func(l *Ladder) { l.Rungs[0].Preset = "turbo" }, []string{`rungs[0].preset: "turbo"`}},
		{"framerate", func(l *Ladder) { l.Rungs[0].Framerate = -1 }, []string{"rungs[0].framerate"}},
		{"audio", func(l *Ladder) { l.Audio = Audio{Bitrate: "x", SampleRate: 12345, Channels: 0} },
			[]string{"audio.bitrate", "audio.sample_rate: 12345", "audio.channels: 0"}},
		{"two sources", func(l *Ladder) {
			l.Rungs = append(l.Rungs, Rung{Name: "src", Source: true}, Rung{Name: "src2", Source: true})
		}, []string{"rungs: only one rung can be the source"}},
		{"source needs no bitrate", func(l *Ladder) { l.Rungs = append(l.Rungs, Rung{Name: "source", Source: true}) }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := good()
			tc.edit(&l)
			err := l.Validate()
			if len(tc.wants) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseBitrate(t *testing.T) {
	for in, want := range map[string]int64{"800k": 800_000, "5M": 5_000_000, "128000": 128_000, "1.5M": 1_500_000} {
		if got, err := ParseBitrate(in); err != nil || got != want {
			t.Errorf("ParseBitrate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "k", "-5k", "fast"} {
		if _, err := ParseBitrate(in); err == nil {
			t.Errorf("ParseBitrate(%q): no error", in)
		}
	}
}

type dims struct {
	name string
	w, h int
	fps  float64
}

func planDims(p []PlannedRung) []dims {
	var out []dims
	for _, r := range p {
		out = append(out, dims{r.Name, r.Width, r.Height, r.FPS})
	}
	return out
}

func TestPlan(t *testing.T) {
	def := DefaultLadder()
	withSource := DefaultLadder()
	withSource.Rungs = append([]Rung{{Name: "source", Source: true}}, withSource.Rungs...)
	capped := DefaultLadder()
	capped.Rungs[3].Framerate = 30
	tests := []struct {
		name string
		l    Ladder
		src  SourceInfo
		want []dims
	}{
		{"1080p30 keeps all", def, SourceInfo{Width: 1920, Height: 1080, FPS: 30},
			[]dims{{"1080p", 1920, 1080, 30}, {"720p", 1280, 720, 30}, {"480p", 854, 480, 30}, {"360p", 640, 360, 30}}},
		{"720p drops 1080p (no upscale)", def, SourceInfo{Width: 1280, Height: 720, FPS: 30},
			[]dims{{"720p", 1280, 720, 30}, {"480p", 854, 480, 30}, {"360p", 640, 360, 30}}},
		{"4:3 source keeps its aspect", def, SourceInfo{Width: 1440, Height: 1080, FPS: 25},
			[]dims{{"1080p", 1440, 1080, 25}, {"720p", 960, 720, 25}, {"480p", 640, 480, 25}, {"360p", 480, 360, 25}}},
		{"portrait: height is the short side", def, SourceInfo{Width: 720, Height: 1280, FPS: 30},
			[]dims{{"720p", 720, 1280, 30}, {"480p", 480, 854, 30}, {"360p", 360, 640, 30}}},
		{"rotated phone video is portrait", def, SourceInfo{Width: 1280, Height: 720, FPS: 30, Rotation: 90},
			[]dims{{"720p", 720, 1280, 30}, {"480p", 480, 854, 30}, {"360p", 360, 640, 30}}},
		{"anamorphic SAR 4:3 on 1440x1080", def, SourceInfo{Width: 1440, Height: 1080, FPS: 25, SARNum: 4, SARDen: 3},
			[]dims{{"1080p", 1920, 1080, 25}, {"720p", 1280, 720, 25}, {"480p", 854, 480, 25}, {"360p", 640, 360, 25}}},
		{"tiny source keeps one rung at its size", def, SourceInfo{Width: 320, Height: 240, FPS: 15},
			[]dims{{"360p", 320, 240, 15}}},
		{"odd source size rounds to even", def, SourceInfo{Width: 321, Height: 181, FPS: 30},
			[]dims{{"360p", 322, 182, 30}}},
		{"frame rate capped at the source's", capped, SourceInfo{Width: 1280, Height: 720, FPS: 25},
			[]dims{{"720p", 1280, 720, 25}, {"480p", 854, 480, 25}, {"360p", 640, 360, 25}}},
		{"rung cap below the source's", capped, SourceInfo{Width: 1280, Height: 720, FPS: 60},
			[]dims{{"720p", 1280, 720, 60}, {"480p", 854, 480, 60}, {"360p", 640, 360, 30}}},
		{"source pass-through", withSource, SourceInfo{Width: 854, Height: 480, FPS: 30},
			[]dims{{"source", 854, 480, 30}, {"480p", 854, 480, 30}, {"360p", 640, 360, 30}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := planDims(Plan(tc.l, tc.src))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Plan = %v\nwant   %v", got, tc.want)
			}
		})
	}
}

func TestPlanFlags(t *testing.T) {
	capped := DefaultLadder()
	capped.Rungs[3].Framerate = 30
	p := Plan(capped, SourceInfo{Width: 1920, Height: 1080, FPS: 60, Interlaced: true, Rotation: -90})
	for _, r := range p {
		if !r.Deinterlace || r.Rotation != 270 {
			t.Errorf("%s: deinterlace %v rotation %d", r.Name, r.Deinterlace, r.Rotation)
		}
		if r.LimitFPS != (r.Name == "360p") {
			t.Errorf("%s: LimitFPS %v", r.Name, r.LimitFPS)
		}
	}
	if p := Plan(capped, SourceInfo{Width: 1280, Height: 720, FPS: 25}); p[len(p)-1].LimitFPS {
		t.Error("a cap above the source rate must not add an fps filter")
	}
	if got := Encoded(Plan(Ladder{Rungs: []Rung{{Name: "s", Source: true}, {Name: "a", Height: 360}}}, SourceInfo{Width: 640, Height: 360})); len(got) != 1 || got[0].Name != "a" {
		t.Errorf("Encoded = %+v", got)
	}
}

func TestSourceInfoNoVideo(t *testing.T) {
	if _, err := SourceInfoFromTracks(nil); err != ErrNoVideo {
		t.Fatalf("err = %v", err)
	}
}

// ---- ffmpeg arguments ----

func twoRungPlan() []PlannedRung {
	l := DefaultLadder()
	l.Rungs = []Rung{{Name: "source", Source: true}, l.Rungs[2], l.Rungs[3]}
	l.Rungs[2].Framerate = 15
	return Plan(l, SourceInfo{Width: 1280, Height: 720, FPS: 30})
}

func TestArgsX264Golden(t *testing.T) {
	got := Args(twoRungPlan(), DefaultLadder().Audio, X264{}, ArgsOptions{SegmentDuration: 2 * time.Second})
	want := []string{
		"-hide_banner", "-nostats", "-loglevel", "warning", "-progress", "pipe:5",
		"-analyzeduration", "1000000", "-probesize", "1000000", "-f", "mpegts", "-i", "pipe:0",
		"-filter_complex", "[0:v:0]split=2[s0][s1];" +
			"[s0]scale=w=854:h=480,setsar=1,format=yuv420p[v0];" +
			"[s1]fps=15,scale=w=640:h=360,setsar=1,format=yuv420p[v1]",
		"-map", "[v0]", "-map", "[v1]", "-map", "0:a:0",
		"-c:v:0", "libx264", "-preset:v:0", "veryfast", "-profile:v:0", "high",
		"-g:v:0", "60", "-keyint_min:v:0", "60", "-sc_threshold:v:0", "0",
		"-b:v:0", "1200k", "-maxrate:v:0", "1284k", "-bufsize:v:0", "2568k",
		"-force_key_frames:v:0", "expr:gte(t,n_forced*2)",
		"-c:v:1", "libx264", "-preset:v:1", "veryfast", "-profile:v:1", "high",
		"-g:v:1", "30", "-keyint_min:v:1", "30", "-sc_threshold:v:1", "0",
		"-b:v:1", "800k", "-maxrate:v:1", "856k", "-bufsize:v:1", "1712k",
		"-force_key_frames:v:1", "expr:gte(t,n_forced*2)",
		"-af", "aresample=async=1:first_pts=0",
		"-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2",
		"-f", "tee", `[select=\'0,2\':f=mpegts]pipe\:3|[select=\'1,2\':f=mpegts]pipe\:4`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Args =\n%q\nwant\n%q", got, want)
	}
}

func TestArgsOptions(t *testing.T) {
	p := Plan(Ladder{Rungs: []Rung{{Name: "360p", Height: 360, VideoBitrate: "800k"}}},
		SourceInfo{Width: 1920, Height: 1080, FPS: 50, Interlaced: true, Rotation: 90})
	got := strings.Join(Args(p, Audio{}, X264{}, ArgsOptions{SegmentDuration: 4 * time.Second, NoAudio: true, FirstOutputFD: 7}), " ")
	for _, want := range []string{
		"-progress pipe:8",
		"[0:v:0]yadif=deint=interlaced,transpose=clock,split=1[s0];[s0]scale=w=360:h=640,setsar=1,format=yuv420p[v0]",
		"-g:v:0 200 -keyint_min:v:0 200",
		"-maxrate:v:0 800k -bufsize:v:0 1600k",
		"expr:gte(t,n_forced*4)",
		`-f tee [select=\'0\':f=mpegts]pipe\:7`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args lack %q:\n%s", want, got)
		}
	}
	for _, bad := range []string{"-c:a", "0:a:0"} {
		if strings.Contains(got, bad) {
			t.Errorf("NoAudio args contain %q", bad)
		}
	}
	// Unknown frame rate: no GOP, keyframes still forced on the grid.
	p = Plan(Ladder{Rungs: []Rung{{Name: "360p", Height: 360, VideoBitrate: "800k"}}}, SourceInfo{Width: 640, Height: 360})
	got = strings.Join(Args(p, DefaultLadder().Audio, X264{}, ArgsOptions{}), " ")
	if strings.Contains(got, "-g:v:0") || !strings.Contains(got, "expr:gte(t,n_forced*2)") {
		t.Errorf("unknown fps args: %s", got)
	}
}

// Hardware encoders: argument tests only (no GPU on CI).
func TestArgsHardwareEncoders(t *testing.T) {
	plan := twoRungPlan()[:2] // source + 480p
	tests := []struct {
		enc    Encoder
		global []string
		filter string
		stream []string
	}{
		{NVENC{}, nil,
			"[0:v:0]split=1[s0];[s0]scale=w=854:h=480,setsar=1,format=yuv420p[v0]",
			[]string{"-c:v:0", "h264_nvenc", "-preset:v:0", "p2", "-tune:v:0", "ll", "-profile:v:0", "high",
				"-rc:v:0", "vbr", "-g:v:0", "60", "-no-scenecut:v:0", "1", "-forced-idr:v:0", "1"}},
		{VAAPI{}, []string{"-init_hw_device", "vaapi=va:/dev/dri/renderD128", "-filter_hw_device", "va"},
			"[0:v:0]split=1[s0];[s0]scale=w=854:h=480,setsar=1,format=nv12,hwupload[v0]",
			[]string{"-c:v:0", "h264_vaapi", "-profile:v:0", "high", "-rc_mode:v:0", "VBR", "-g:v:0", "60", "-bf:v:0", "0"}},
		{QSV{Device: "/dev/dri/renderD129"}, []string{"-init_hw_device", "qsv=qs:hw,child_device=/dev/dri/renderD129", "-filter_hw_device", "qs"},
			"[0:v:0]split=1[s0];[s0]scale=w=854:h=480,setsar=1,format=nv12,hwupload=extra_hw_frames=64[v0]",
			[]string{"-c:v:0", "h264_qsv", "-preset:v:0", "veryfast", "-profile:v:0", "high", "-look_ahead:v:0", "0",
				"-g:v:0", "60", "-forced_idr:v:0", "1"}},
	}
	for _, tc := range tests {
		t.Run(tc.enc.Name(), func(t *testing.T) {
			got := Args(plan, DefaultLadder().Audio, tc.enc, ArgsOptions{})
			want := []string{"-hide_banner", "-nostats", "-loglevel", "warning", "-progress", "pipe:4"}
			want = append(want, tc.global...)
			want = append(want, "-analyzeduration", "1000000", "-probesize", "1000000", "-f", "mpegts", "-i", "pipe:0",
				"-filter_complex", tc.filter, "-map", "[v0]", "-map", "0:a:0")
			want = append(want, tc.stream...)
			want = append(want, "-b:v:0", "1200k", "-maxrate:v:0", "1284k", "-bufsize:v:0", "2568k",
				"-force_key_frames:v:0", "expr:gte(t,n_forced*2)",
				"-af", "aresample=async=1:first_pts=0",
				"-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2",
				"-f", "tee", `[select=\'0,1\':f=mpegts]pipe\:3`)
			if !slices.Equal(got, want) {
				t.Fatalf("Args =\n%q\nwant\n%q", got, want)
			}
		})
	}
}

func TestEncoderPresetsAndProfiles(t *testing.T) {
	r := PlannedRung{Rung: Rung{Preset: "ultrafast", Profile: "baseline"}}
	if a := strings.Join(NVENC{GPU: 1}.StreamArgs(2, r, 0), " "); !strings.Contains(a, "-preset:v:2 p1") || !strings.Contains(a, "-gpu:v:2 1") || strings.Contains(a, "-g:v:2") {
		t.Errorf("nvenc: %s", a)
	}
	if a := strings.Join(VAAPI{}.StreamArgs(0, r, 50), " "); !strings.Contains(a, "-profile:v:0 constrained_baseline") {
		t.Errorf("vaapi: %s", a)
	}
	if a := strings.Join(QSV{}.StreamArgs(0, PlannedRung{Rung: Rung{Preset: "slow"}}, 50), " "); !strings.Contains(a, "-preset:v:0 slow") {
		t.Errorf("qsv: %s", a)
	}
	for name, want := range map[string]string{"": "libx264", "libx264": "libx264", "h264_nvenc": "h264_nvenc", "vaapi": "h264_vaapi", "h264_qsv": "h264_qsv"} {
		e, err := EncoderByName(name, "")
		if err != nil || e.Name() != want {
			t.Errorf("EncoderByName(%q) = %v, %v", name, e, err)
		}
	}
	if _, err := EncoderByName("h265_magic", ""); err == nil {
		t.Error("unknown encoder accepted")
	}
}

// ---- stderr and progress ----

func TestTranslate(t *testing.T) {
	tests := []struct {
		lines []string
		want  string
	}{
		{[]string{"Unknown encoder 'h264_foo'"}, "encoder h264_foo is not available in this ffmpeg build"},
		{[]string{"[AVFilterGraph @ 0x1] No such filter: 'zscale'", "Error initializing complex filters."}, "filter zscale is not available in this ffmpeg build"},
		{[]string{"pipe:0: Invalid data found when processing input"}, "the published stream could not be decoded"},
		{[]string{"[h264_nvenc @ 0x5] Cannot load libcuda.so.1",
			"Error initializing output stream 0:0 -- Error while opening encoder for output stream #0:0 - maybe incorrect parameters such as bit_rate, rate, width or height"},
			"no NVIDIA GPU for h264_nvenc (driver or device missing)"},
		{[]string{"[h264_nvenc @ 0x5] No NVENC capable devices found"}, "no NVIDIA GPU for h264_nvenc (driver or device missing)"},
		{[]string{"Device creation failed: -22.", "Failed to set value 'vaapi=va:/dev/dri/renderD128' for option 'init_hw_device': Invalid argument"},
			"no VAAPI device for h264_vaapi (check /dev/dri/renderD128 and the VA driver)"},
		{[]string{"[h264_qsv @ 0x5] Error initializing an internal MFX session: unsupported (-3)", "Error while opening encoder"},
			"no Intel Quick Sync device for h264_qsv (check /dev/dri and the oneVPL/Media SDK runtime)"},
		{[]string{"Stream map '0:a:0' matches no streams."}, "the published stream has no audio track"},
		{[]string{"Error while opening encoder for output stream #0:0"}, "the encoder rejected its settings (profile, size, bitrate or preset)"},
		{[]string{"av_interleaved_write_frame(): Broken pipe"}, "a rendition's output was closed before ffmpeg finished"},
		{[]string{"something new and strange"}, ""},
	}
	for _, tc := range tests {
		if got := Translate(tc.lines); got != tc.want {
			t.Errorf("Translate(%q) = %q, want %q", tc.lines, got, tc.want)
		}
	}
}

func TestStderrTail(t *testing.T) {
	var logged []string
	tail := &stderrTail{max: 3, log: func(l string) { logged = append(logged, l) }}
	tail.Write([]byte("one\ntwo\r\nConversion failed!\n\nthr"))
	tail.Write([]byte("ee\nfour\nfive"))
	if got := tail.Lines(); !slices.Equal(got, []string{"three", "four", "five"}) {
		t.Errorf("lines %q", got)
	}
	if !slices.Equal(logged, []string{"one", "two", "three", "four", "five"}) {
		t.Errorf("logged %q", logged)
	}
	e := &ExitError{Code: 1, Lines: []string{"x"}, Reason: "the published stream could not be decoded"}
	if e.Error() != "ffmpeg exited with code 1: the published stream could not be decoded" {
		t.Errorf("Error() = %q", e.Error())
	}
	if e := (&ExitError{Code: -1, Signal: "killed"}); e.Error() != "ffmpeg was ended by signal killed" {
		t.Errorf("Error() = %q", e.Error())
	}
}

func TestProgress(t *testing.T) {
	block := func(speed string) string {
		return "frame=181\nfps=29.97\nstream_0_0_q=-1.0\nbitrate=N/A\ntotal_size=N/A\nout_time_us=6037333\n" +
			"out_time=00:00:06.037333\ndup_frames=2\ndrop_frames=1\nspeed=" + speed + "\nprogress=continue\n"
	}
	var got []Progress
	in := block("1.02x") + block("0.90x") + block("N/A") + block("0.8x") + block("0.7x") + block("1.0x") +
		strings.Replace(block("0.5x"), "continue", "end", 1)
	if err := ReadProgress(strings.NewReader(in), 3, func(p Progress) { got = append(got, p) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 {
		t.Fatalf("%d reports", len(got))
	}
	first := got[0]
	want := Progress{Frame: 181, FPS: 29.97, DropFrames: 1, DupFrames: 2, OutTime: 6037333 * time.Microsecond, Speed: 1.02}
	if first != want {
		t.Errorf("first = %+v\nwant    %+v", first, want)
	}
	var behind []bool
	for _, p := range got {
		behind = append(behind, p.FallingBehind)
	}
	// slow, N/A (no change), slow, slow → 3 in a row; 1.0x resets.
	if wantB := []bool{false, false, false, false, true, false, false}; !slices.Equal(behind, wantB) {
		t.Errorf("FallingBehind %v, want %v", behind, wantB)
	}
	if !got[6].End || got[5].End {
		t.Error("End flag")
	}
}
