package vod

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// mpdInfo is the part of the dash muxer's MPD the HLS master needs: the
// codec strings ffmpeg computed from the real parameter sets.
type mpdInfo struct {
	XMLName xml.Name `xml:"MPD"`
	Type    string   `xml:"type,attr"`
	Periods []struct {
		AdaptationSets []struct {
			ContentType     string `xml:"contentType,attr"`
			Lang            string `xml:"lang,attr"`
			Representations []struct {
				ID     string `xml:"id,attr"`
				Codecs string `xml:"codecs,attr"`
				Width  int    `xml:"width,attr"`
				Height int    `xml:"height,attr"`
			} `xml:"Representation"`
		} `xml:"AdaptationSet"`
	} `xml:"Period"`
}

func readMPD(path string) (*mpdInfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m mpdInfo
	if err := xml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &m, nil
}

// codecs maps representation id → codecs attribute.
func (m *mpdInfo) codecs() map[int]string {
	out := map[int]string{}
	for _, p := range m.Periods {
		for _, as := range p.AdaptationSets {
			for _, r := range as.Representations {
				if n, err := strconv.Atoi(r.ID); err == nil {
					out[n] = r.Codecs
				}
			}
		}
	}
	return out
}

// Rendition is one packaged representation, as the master playlist and
// the QA step see it.
type Rendition struct {
	// Rep is the DASH representation id and the folder number (rN).
	Rep  int
	Kind string // "video" or "audio"
	// Name is the rung's name ("720p") or the language ("eng").
	Name          string
	Width, Height int     // video
	FPS           float64 // video
	Language      string  // audio
	Codecs        string
	// PeakBitrate and AverageBitrate are measured from the segments (bits
	// per second), as HLS BANDWIDTH and AVERAGE-BANDWIDTH must be.
	PeakBitrate, AverageBitrate int64
	Duration                    time.Duration // sum of the segment durations
	Segments                    int
}

// Playlist is the rendition's HLS media playlist, relative to the output folder.
func (r Rendition) Playlist() string { return RepDir(r.Rep) + "/index.m3u8" }

// finishMediaPlaylist rewrites the dash muxer's media_N.m3u8 as rN/index.m3u8:
// URIs relative to the folder, a VOD playlist type, and no
// EXT-X-PROGRAM-DATE-TIME (ffmpeg stamps the wall clock of the encode,
// which means nothing for on-demand content). It measures the bitrates
// from the segment files on the way.
func finishMediaPlaylist(dir string, r *Rendition) error {
	src := filepath.Join(dir, fmt.Sprintf("media_%d.m3u8", r.Rep))
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	prefix := RepDir(r.Rep) + "/"
	var out strings.Builder
	var dur float64
	var total int64
	type seg struct {
		size int64
		dur  float64
	}
	var segs []seg
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "#EXT-X-PROGRAM-DATE-TIME"):
			continue
		case strings.HasPrefix(line, "#EXT-X-VERSION"):
			// Version 7 as the master: EXT-X-MAP in a playlist without
			// I-frames only needs 6, but one version everywhere is simpler.
			out.WriteString("#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n")
			continue
		case strings.HasPrefix(line, "#EXT-X-MAP:"):
			line = strings.Replace(line, `URI="`+prefix, `URI="`, 1)
		case strings.HasPrefix(line, "#EXTINF:"):
			d, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(line, "#EXTINF:"), ","), 64)
			dur = d
			r.Duration += time.Duration(d * float64(time.Second))
		case line != "" && !strings.HasPrefix(line, "#"):
			fi, err := os.Stat(filepath.Join(dir, line))
			if err != nil {
				return fmt.Errorf("segment listed in %s: %w", src, err)
			}
			total += fi.Size()
			r.Segments++
			segs = append(segs, seg{fi.Size(), dur})
			line = strings.TrimPrefix(line, prefix)
		}
		out.WriteString(line + "\n")
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if s := r.Duration.Seconds(); s > 0 {
		r.AverageBitrate = int64(math.Ceil(float64(total) * 8 / s))
	}
	// The peak over full-length segments: a short last segment says little
	// (a keyframe alone can be most of it) unless it is the only one.
	longest := 0.0
	for _, sg := range segs {
		longest = max(longest, sg.dur)
	}
	for _, sg := range segs {
		if sg.dur > 0 && sg.dur >= longest/2 {
			r.PeakBitrate = max(r.PeakBitrate, int64(math.Ceil(float64(sg.size)*8/sg.dur)))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, r.Playlist()), []byte(out.String()), 0o644); err != nil {
		return err
	}
	return os.Remove(src)
}

// SubtitlePlaylist is the one-segment HLS playlist over a WebVTT file.
func SubtitlePlaylist(vtt string, d time.Duration) string {
	return fmt.Sprintf("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:%.3f,\n%s\n#EXT-X-ENDLIST\n",
		int(math.Ceil(d.Seconds())), d.Seconds(), vtt)
}

// Master writes the HLS master playlist: each audio language an
// EXT-X-MEDIA in one group, each subtitle track one in another, and a
// variant per video rung (audio-only input: one variant, the default
// language's playlist). BANDWIDTH is the rung's measured peak plus the
// largest audio peak, since a player may pick any language.
func Master(p *Plan, video, audio []Rendition) string {
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n")
	var audioPeak, audioAvg int64
	audioCodec := ""
	if len(audio) > 0 {
		b.WriteString("\n")
	}
	names := map[string]int{}
	uniq := func(n string) string {
		names[n]++
		if names[n] > 1 {
			return fmt.Sprintf("%s %d", n, names[n])
		}
		return n
	}
	for i, a := range audio {
		audioPeak, audioAvg = max(audioPeak, a.PeakBitrate), max(audioAvg, a.AverageBitrate)
		audioCodec = a.Codecs
		def := "NO"
		if i == p.DefaultAudio {
			def = "YES"
		}
		fmt.Fprintf(&b, "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"%s\",%sDEFAULT=%s,AUTOSELECT=YES,CHANNELS=\"%d\",URI=\"%s\"\n",
			uniq(languageName(a.Language)), languageAttr(a.Language), def, p.AudioCodec.Channels, a.Playlist())
	}
	if len(p.Subtitles) > 0 && len(video) > 0 {
		names = map[string]int{} // NAME is unique within a group
		b.WriteString("\n")
		for _, s := range p.Subtitles {
			fmt.Fprintf(&b, "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"%s\",%sDEFAULT=NO,AUTOSELECT=YES,URI=\"%s/%s.m3u8\"\n",
				uniq(languageName(s.Language)), languageAttr(s.Language), SubtitlesDir, s.Name)
		}
	}
	b.WriteString("\n")
	if len(video) == 0 {
		a := audio[p.DefaultAudio]
		fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d,AVERAGE-BANDWIDTH=%d,CODECS=\"%s\",AUDIO=\"audio\"\n%s\n",
			audioPeak, audioAvg, a.Codecs, a.Playlist())
		return b.String()
	}
	for _, v := range video {
		codecs := v.Codecs
		attrs := ""
		if len(audio) > 0 {
			codecs += "," + audioCodec
			attrs += `,AUDIO="audio"`
		}
		if len(p.Subtitles) > 0 {
			attrs += `,SUBTITLES="subs"`
		}
		fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d,AVERAGE-BANDWIDTH=%d,CODECS=\"%s\",RESOLUTION=%dx%d,FRAME-RATE=%.3f%s\n%s\n",
			v.PeakBitrate+audioPeak, v.AverageBitrate+audioAvg, codecs, v.Width, v.Height, v.FPS, attrs, v.Playlist())
	}
	return b.String()
}

// TextAdaptationSets are the DASH adaptation sets of the WebVTT files
// (the dash muxer does not carry subtitles), numbered from firstID.
func TextAdaptationSets(p *Plan, firstID int) string {
	var b strings.Builder
	for i, s := range p.Subtitles {
		fmt.Fprintf(&b, "\t\t<AdaptationSet id=\"%d\" contentType=\"text\" mimeType=\"text/vtt\" lang=\"%s\">\n", firstID+i, xmlEscape(s.Language))
		b.WriteString("\t\t\t<Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"subtitle\" />\n")
		fmt.Fprintf(&b, "\t\t\t<Representation id=\"sub-%s\" bandwidth=\"256\">\n", xmlEscape(s.Name))
		fmt.Fprintf(&b, "\t\t\t\t<BaseURL>%s/%s.vtt</BaseURL>\n", SubtitlesDir, xmlEscape(s.Name))
		b.WriteString("\t\t\t</Representation>\n\t\t</AdaptationSet>\n")
	}
	return b.String()
}

// addTextToMPD inserts the text adaptation sets at the end of the (only)
// Period. A text splice rather than an XML round trip: encoding/xml would
// rewrite the namespaces and attribute order of ffmpeg's MPD.
func addTextToMPD(path string, sets string) error {
	if sets == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(data)
	i := strings.LastIndex(s, "</Period>")
	if i < 0 {
		return fmt.Errorf("%s: no </Period> to add the subtitles to", path)
	}
	j := strings.LastIndex(s[:i], "\n") + 1 // the start of the </Period> line
	s = s[:j] + sets + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// ThumbnailsTrack is the WebVTT thumbnails track: one cue per interval,
// pointing at its tile of the sprite sheet with a media fragment.
func ThumbnailsTrack(t ThumbnailPlan, d time.Duration) string {
	var b strings.Builder
	b.WriteString("WEBVTT\n")
	for i := range t.Count {
		start := time.Duration(i) * t.Interval
		end := min(start+t.Interval, d)
		if start >= d {
			break
		}
		fmt.Fprintf(&b, "\n%s --> %s\n%s#xywh=%d,%d,%d,%d\n", vttTime(start), vttTime(end), ThumbnailsFile,
			(i%t.Cols)*t.Width, (i/t.Cols)*t.Height, t.Width, t.Height)
	}
	return b.String()
}

func vttTime(d time.Duration) string {
	ms := d.Milliseconds()
	return fmt.Sprintf("%02d:%02d:%02d.%03d", ms/3600000, ms/60000%60, ms/1000%60, ms%1000)
}

// iso639 maps the ISO 639-2 codes containers carry to the RFC 5646
// (two-letter) tags HLS LANGUAGE wants, and a NAME players show.
var iso639 = map[string][2]string{
	"eng": {"en", "English"}, "fra": {"fr", "Français"}, "fre": {"fr", "Français"}, "deu": {"de", "Deutsch"},
	"ger": {"de", "Deutsch"}, "spa": {"es", "Español"}, "ita": {"it", "Italiano"}, "por": {"pt", "Português"},
	"nld": {"nl", "Nederlands"}, "dut": {"nl", "Nederlands"}, "rus": {"ru", "Русский"}, "jpn": {"ja", "日本語"},
	"zho": {"zh", "中文"}, "chi": {"zh", "中文"}, "kor": {"ko", "한국어"}, "ara": {"ar", "العربية"},
	"hin": {"hi", "हिन्दी"}, "swe": {"sv", "Svenska"}, "nor": {"no", "Norsk"}, "dan": {"da", "Dansk"},
	"fin": {"fi", "Suomi"}, "pol": {"pl", "Polski"}, "tur": {"tr", "Türkçe"}, "ukr": {"uk", "Українська"},
}

func languageAttr(code string) string {
	switch {
	case code == "" || code == "und":
		return ""
	case iso639[code][0] != "":
		return `LANGUAGE="` + iso639[code][0] + `",`
	}
	return `LANGUAGE="` + code + `",`
}

func languageName(code string) string {
	switch {
	case code == "" || code == "und":
		return "Default"
	case iso639[code][1] != "":
		return iso639[code][1]
	}
	return code
}
