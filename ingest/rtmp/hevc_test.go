package rtmp

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"math"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/media"
)

// ffmpeg 5.1 cannot publish HEVC or Opus over RTMP, so the peer here is
// gortmplib's client speaking Enhanced RTMP, fed with the real packets of
// testdata/hevc_opus_360p.mkv as ffprobe dumps them.
func TestEnhancedRTMPHEVCOpus(t *testing.T) {
	t.Parallel()
	ffprobe := testenv.FFprobe(t)
	file := testenv.Testdata("hevc_opus_360p.mkv")
	vExtra, vPkts := probePackets(t, ffprobe, file, "v:0")
	_, aPkts := probePackets(t, ffprobe, file, "a:0")
	vps, sps, pps := parseHvcC(t, vExtra)

	const readTimeout = time.Second
	e := newEnv(t, readTimeout)

	// OBS style: tcUrl rtmp://host/live, stream name = key (gortmplib's
	// client sends the URL fragment as the stream name).
	u, err := url.Parse(e.url("/live#" + testKey))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &gortmplib.Client{URL: u, Publish: true}
	if err := c.Initialize(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))

	vt := &gortmplib.Track{Codec: &codecs.H265{VPS: vps, SPS: sps, PPS: pps}}
	at := &gortmplib.Track{Codec: &codecs.Opus{IDHeader: &opus.IDHeader{
		Version: 1, ChannelCount: 2, PreSkip: 312, InputSampleRate: 48000,
	}}}
	w := &gortmplib.Writer{Conn: c, Tracks: []*gortmplib.Track{vt, at}}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}

	// Interleave by decode time, as a muxer would.
	vi, ai := 0, 0
	for vi < len(vPkts) || ai < len(aPkts) {
		if vi < len(vPkts) && (ai >= len(aPkts) || vPkts[vi].dts <= aPkts[ai].dts) {
			p := vPkts[vi]
			var au h264.AVCC // same 4-byte length-prefixed layout as hvcC streams
			if err := au.Unmarshal(p.data); err != nil {
				t.Fatalf("video packet %d: %v", vi, err)
			}
			if err := w.WriteH265(vt, p.pts, p.dts, au); err != nil {
				t.Fatal(err)
			}
			vi++
		} else {
			if err := w.WriteOpus(at, aPkts[ai].pts, aPkts[ai].data); err != nil {
				t.Fatal(err)
			}
			ai++
		}
	}

	// Everything is sent and the client now goes silent without closing:
	// the server must drop it after ReadTimeout, with that as the reason.
	p := e.waitPub(0, 10*time.Second)
	waitFor(t, 10*time.Second, "the stalled publication to end", p.isClosed)
	if !strings.Contains(e.logs.String(), `reason="no data from publisher for 1s"`) {
		t.Errorf("stall end not logged with its reason")
	}

	if len(p.tracks) != 2 {
		t.Fatalf("got %d tracks, want 2", len(p.tracks))
	}
	hc, ok := p.tracks[0].Codec.(*media.H265)
	if !ok || !bytes.Equal(hc.VPS, vps) || !bytes.Equal(hc.SPS, sps) || !bytes.Equal(hc.PPS, pps) {
		t.Fatalf("track 0 = %#v, want H.265 with the clip's VPS/SPS/PPS", p.tracks[0].Codec)
	}
	if oc, ok := p.tracks[1].Codec.(*media.Opus); !ok || oc.Channels != 2 {
		t.Fatalf("track 1 = %#v, want stereo Opus", p.tracks[1].Codec)
	}

	video := p.unitsOf(0)
	if len(video) != len(vPkts) {
		t.Fatalf("got %d video units, want %d", len(video), len(vPkts))
	}
	keyframes := 0
	for i, u := range video {
		if u.RandomAccess {
			keyframes++
		}
		if u.RandomAccess != vPkts[i].key {
			t.Errorf("video unit %d: RandomAccess=%v, the clip says %v", i, u.RandomAccess, vPkts[i].key)
		}
		// RTMP carries milliseconds.
		if u.DTS != vPkts[i].dts.Truncate(time.Millisecond) || u.PTS != vPkts[i].pts.Truncate(time.Millisecond) {
			t.Fatalf("video unit %d: PTS/DTS %v/%v, sent %v/%v", i, u.PTS, u.DTS, vPkts[i].pts, vPkts[i].dts)
		}
	}
	if !video[0].RandomAccess || keyframes != 2 { // 4 s, 2 s GOP
		t.Errorf("first unit RandomAccess=%v, %d keyframes; want true, 2", video[0].RandomAccess, keyframes)
	}

	audio := p.unitsOf(1)
	if len(audio) != len(aPkts) {
		t.Fatalf("got %d audio units, want %d", len(audio), len(aPkts))
	}
	for i, u := range audio {
		if len(u.Payload) != 1 || !bytes.Equal(u.Payload[0], aPkts[i].data) || !u.RandomAccess || u.PTS != u.DTS {
			t.Fatalf("audio unit %d differs from the packet sent", i)
		}
	}
}

type probedPacket struct {
	pts, dts time.Duration
	key      bool
	data     []byte
}

// probePackets returns the stream's extradata and its packets in decode
// order. Timestamps are shifted by +100 ms (RTMP has no negative times) and,
// since Matroska stores no DTS, DTS is rebuilt as the sorted PTS shifted by
// the reorder delay.
func probePackets(t *testing.T, ffprobe, file, stream string) ([]byte, []probedPacket) {
	t.Helper()
	out, err := exec.Command(ffprobe, "-v", "error", "-select_streams", stream,
		"-show_streams", "-show_packets", "-show_data", "-of", "json", file).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var res struct {
		Streams []struct {
			Extradata string `json:"extradata"`
		} `json:"streams"`
		Packets []struct {
			PTSTime string `json:"pts_time"`
			Flags   string `json:"flags"`
			Data    string `json:"data"`
		} `json:"packets"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Streams) != 1 || len(res.Packets) == 0 {
		t.Fatalf("ffprobe found %d streams, %d packets", len(res.Streams), len(res.Packets))
	}
	pkts := make([]probedPacket, len(res.Packets))
	for i, p := range res.Packets {
		sec, err := strconv.ParseFloat(p.PTSTime, 64)
		if err != nil {
			t.Fatalf("packet %d pts_time %q: %v", i, p.PTSTime, err)
		}
		pkts[i] = probedPacket{
			pts:  time.Duration(math.Round(sec*1000))*time.Millisecond + 100*time.Millisecond,
			key:  strings.HasPrefix(p.Flags, "K"),
			data: parseHexDump(t, p.Data),
		}
	}
	sorted := make([]time.Duration, len(pkts))
	for i := range pkts {
		sorted[i] = pkts[i].pts
	}
	slices.Sort(sorted)
	var shift time.Duration
	for i := range pkts {
		shift = max(shift, sorted[i]-pkts[i].pts)
	}
	for i := range pkts {
		pkts[i].dts = sorted[i] - shift
	}
	return parseHexDump(t, res.Streams[0].Extradata), pkts
}

// parseHexDump decodes ffprobe's -show_data dump
// ("00000000: 0000 16be 2801 ...  ....(...").
func parseHexDump(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	for line := range strings.SplitSeq(s, "\n") {
		_, rest, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		hexPart, _, _ := strings.Cut(rest, "  ")
		b, err := hex.DecodeString(strings.ReplaceAll(hexPart, " ", ""))
		if err != nil {
			t.Fatalf("hex dump line %q: %v", line, err)
		}
		out = append(out, b...)
	}
	return out
}

// parseHvcC extracts VPS, SPS and PPS from an HEVCDecoderConfigurationRecord.
func parseHvcC(t *testing.T, b []byte) (vps, sps, pps []byte) {
	t.Helper()
	if len(b) < 23 {
		t.Fatalf("hvcC of %d bytes", len(b))
	}
	n, pos := int(b[22]), 23
	for range n {
		if pos+3 > len(b) {
			t.Fatal("truncated hvcC")
		}
		typ, count := b[pos]&0x3f, int(b[pos+1])<<8|int(b[pos+2])
		pos += 3
		for range count {
			if pos+2 > len(b) {
				t.Fatal("truncated hvcC")
			}
			l := int(b[pos])<<8 | int(b[pos+1])
			pos += 2
			if pos+l > len(b) {
				t.Fatal("truncated hvcC")
			}
			nalu := b[pos : pos+l]
			pos += l
			switch typ {
			case 32:
				vps = nalu
			case 33:
				sps = nalu
			case 34:
				pps = nalu
			}
		}
	}
	if vps == nil || sps == nil || pps == nil {
		t.Fatal("hvcC lacks VPS/SPS/PPS")
	}
	return vps, sps, pps
}
