package vod

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamd/streamd/internal/testenv"
)

// goodOutput runs the real pipeline once on a 4 s clip: two video
// renditions and one audio, 1 s segments.
func goodOutput(t *testing.T) (string, *Result) {
	t.Helper()
	testenv.FFmpeg(t)
	job, err := ParseJob([]byte(smallJob))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "good")
	res, err := Transcode(context.Background(), Options{Input: testenv.Testdata("h264_aac_360p.mp4"), OutDir: dir, Job: job})
	if err != nil {
		t.Fatalf("the good output did not pass: %v", err)
	}
	if len(res.Video) != 2 || len(res.Audio) != 1 || res.Video[0].Segments < 4 {
		t.Fatalf("unexpected good output: %+v %+v", res.Video, res.Audio)
	}
	return dir, res
}

// truncate cuts a file to half its size.
func truncate(t *testing.T, p string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// dropLastSegments removes the last n segments of a media playlist, from
// the playlist and from the disk: a rendition whose encode stopped early.
func dropLastSegments(t *testing.T, dir, playlist string, n int) {
	t.Helper()
	p := filepath.Join(dir, playlist)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	end := lines[len(lines)-1] // #EXT-X-ENDLIST
	lines = lines[:len(lines)-1]
	for range n {
		seg := lines[len(lines)-1]
		if err := os.Remove(filepath.Join(filepath.Dir(p), seg)); err != nil {
			t.Fatal(err)
		}
		lines = lines[:len(lines)-2] // the URI and its #EXTINF
	}
	if err := os.WriteFile(p, []byte(strings.Join(append(lines, end), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestQARefusesDoctoredOutput gives QA copies of one real, good output,
// each damaged in one way, and checks each is refused as qa_failed with a
// reason naming what is wrong; the untouched copy passes.
func TestQARefusesDoctoredOutput(t *testing.T) {
	ffprobe := testenv.FFprobe(t)
	good, res := goodOutput(t)
	cases := []struct {
		name   string
		doctor func(t *testing.T, dir string)
		want   []string // all in the reason; nil: QA must pass
	}{
		{"untouched", func(*testing.T, string) {}, nil},
		{"truncated video segment", func(t *testing.T, dir string) { truncate(t, filepath.Join(dir, "r0/seg-00002.m4s")) },
			[]string{"rendition 180p", "r0/seg-00002.m4s", "truncated"}},
		{"truncated last audio segment", func(t *testing.T, dir string) {
			truncate(t, filepath.Join(dir, RepDir(2), "seg-00005.m4s"))
		}, []string{"rendition und", "r2/seg-00005.m4s", "truncated"}},
		{"rendition shorter than the source", func(t *testing.T, dir string) { dropLastSegments(t, dir, "r1/index.m3u8", 2) },
			[]string{"rendition 120p lasts 2s", "the source 4s"}},
		{"audio shorter than the source", func(t *testing.T, dir string) { dropLastSegments(t, dir, "r2/index.m3u8", 2) },
			[]string{"audio und lasts", "the source 4s"}},
		{"missing init segment", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "r0/init.mp4")) },
			[]string{"rendition 180p", "init segment r0/init.mp4 is missing"}},
		{"segment cut where its mdat box starts", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "r0/seg-00003.m4s")
			b, err := os.ReadFile(p)
			i := bytes.Index(b, []byte("mdat"))
			if err != nil || i < 4 {
				t.Fatalf("no mdat box in %s: %v", p, err)
			}
			if err := os.Truncate(p, int64(i-4)); err != nil {
				t.Fatal(err)
			}
		}, []string{"rendition 180p", "r0/seg-00003.m4s is truncated (no mdat box)"}},
		{"missing segment", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "r1/seg-00003.m4s")) },
			[]string{"rendition 120p", "r1/seg-00003.m4s is missing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			if err := os.CopyFS(dir, os.DirFS(good)); err != nil {
				t.Fatal(err)
			}
			c.doctor(t, dir)
			err := QA(context.Background(), ffprobe, dir, res)
			if c.want == nil {
				if err != nil {
					t.Fatalf("QA refused the good output: %v", err)
				}
				return
			}
			if ErrorCode(err) != CodeQA {
				t.Fatalf("QA: code %q (%v), want %s", ErrorCode(err), err, CodeQA)
			}
			for _, w := range c.want {
				if !strings.Contains(Reason(err), w) {
					t.Errorf("reason %q does not say %q", Reason(err), w)
				}
			}
			t.Log(Reason(err))
			if strings.Contains(Reason(err), "\n") {
				t.Errorf("reason spans lines: %q", Reason(err))
			}
		})
	}
}

func TestTopBoxes(t *testing.T) {
	box := func(typ string, body int) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(8+body))
		return append(append(b, typ...), make([]byte, body)...)
	}
	large := binary.BigEndian.AppendUint32(nil, 1)
	large = binary.BigEndian.AppendUint64(append(large, "mdat"...), 16+4)
	large = append(large, 1, 2, 3, 4)
	toEnd := append(binary.BigEndian.AppendUint32(nil, 0), "mdat...."...)
	for _, c := range []struct {
		name string
		data []byte
		want string // box types, or "error"
	}{
		{"whole", append(box("moof", 10), box("mdat", 100)...), "moof mdat"},
		{"64-bit size", append(box("moof", 0), large...), "moof mdat"},
		{"size 0: to the end", append(box("moof", 0), toEnd...), "moof mdat"},
		{"last box cut", append(box("moof", 10), box("mdat", 100)[:50]...), "error"},
		{"stray bytes", append(box("moof", 10), 0, 0, 0), "error"},
		{"size below a header", append(box("moof", 10), 0, 0, 0, 4, 'f', 'r', 'e', 'e'), "error"},
		{"empty", nil, ""},
	} {
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		types, err := topBoxes(p)
		got := strings.Join(types, " ")
		if err != nil {
			got = "error"
		}
		if got != c.want {
			t.Errorf("%s: got %q (%v), want %q", c.name, got, err, c.want)
		}
	}
}
