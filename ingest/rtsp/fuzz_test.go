package rtsp

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/rtptime"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/streamd/streamd/live"
)

func FuzzStreamKeyFromPath(f *testing.F) {
	for _, s := range []string{
		"/live/secretkey123", "/live/secretkey123/", "/live/", "/live//", "/live/a/b",
		"/other/key", "live/key", "", "/live/k ey", "/live/\x00", "/live/ключ", "/live/\xff",
		"/live/" + strings.Repeat("k", 300),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		key, ok := streamKeyFromPath(path)
		if !ok {
			if key != "" {
				t.Fatalf("refused path returned key %q", key)
			}
			return
		}
		if key == "" || len(key) > maxKeyLen || strings.ContainsAny(key, "/ \t\r\n\x00") {
			t.Fatalf("bad key %q from %q", key, path)
		}
		if path != publishPrefix+key && path != publishPrefix+key+"/" {
			t.Fatalf("key %q does not round-trip to %q", key, path)
		}
	})
}

func FuzzRedact(f *testing.F) {
	f.Add("path has changed, was '/live/secretkey123', now is '/live/x'", "secretkey123")
	f.Add("invalid URL (rtsp://h/live/secretkey123#x)", "secretkey123")
	f.Add("invalid URL (secretkey123", "secretkey123")
	f.Add("expected 'RTSP/1.0', got secretkey123", "secretkey123")
	f.Add("torn down by 127.0.0.1:5000", "")
	f.Fuzz(func(t *testing.T, msg, key string) {
		out := redact(msg, key)
		// A key that the mask text itself contains could reappear from
		// the replacement; real keys are long random strings.
		if len(key) < 6 || strings.Contains("rtsp://"+redacted+publishPrefix+"invalid URL (got ", key) {
			return
		}
		if strings.Contains(out, key) {
			t.Fatalf("redact(%q, %q) = %q still contains the key", msg, key, out)
		}
		if strings.Contains(out, publishPrefix) && !strings.Contains(out, publishPrefix+redacted) {
			t.Fatalf("unmasked publish path in %q", out)
		}
	})
}

// FuzzDepacketize feeds arbitrary RTP packets through the real
// depacketizers, DTS extractors and a real hub stream. Any panic (which
// recoverPanic would turn into a closed session in production) fails.
func FuzzDepacketize(f *testing.F) {
	sps, _ := base64.StdEncoding.DecodeString("Z01AHuygUBf8uAiAAAADAIAAAB4HixbL")
	pps, _ := base64.StdEncoding.DecodeString("aO+8gA==")
	idr := append([]byte{0x65, 0x88, 0x84}, bytes.Repeat([]byte{0x21}, 20)...)
	f.Add([]byte{0, 0, 3, 0x67, 0x42, 0x00, 0, 0, 3, 0x65, 0x88, 0x80})
	f.Add(append([]byte{0, 0, byte(len(idr))}, idr...))
	f.Add([]byte{0, 0, 4, 28, 0x85, 1, 2, 0, 0, 3, 28, 0x45, 3})              // FU-A start/end
	f.Add([]byte{0, 0, 7, 24, 0, 2, 0x67, 0x42, 0, 0})                        // STAP-A, truncated
	f.Add([]byte{1, 0, 6, 0x00, 0x10, 0x00, 0x20, 0xab, 0xcd})                // AAC, one AU header
	f.Add([]byte{1, 0, 8, 0x00, 0x20, 0x00, 0x10, 0x00, 0x10, 0xab, 0xcd})    // AAC, two AUs
	f.Add([]byte{2, 0, 4, 0x40, 0x01, 0x0c, 0x01, 2, 0, 3, 0x26, 0x01, 0xaf}) // H.265 VPS, IDR
	f.Add([]byte{2, 0, 5, 49 << 1, 1, 0x80 | 19, 1, 2})                       // H.265 FU start
	f.Add([]byte{3, 0, 3, 0xfc, 0xff, 0xfe, 3, 0, 0})                         // Opus, empty
	f.Add(append(append([]byte{0, 0, byte(len(sps))}, sps...), append([]byte{0, 0, byte(len(pps))}, pps...)...))

	f.Fuzz(func(t *testing.T, data []byte) {
		logs := &lockedBuffer{}
		log := slog.New(slog.NewTextHandler(logs, nil))
		hub := live.NewHub(log, []live.Channel{{Name: "main", StreamKey: testKey}})
		rec := &recorder{}
		hub.AddListener(rec)

		aacCfg := &mpeg4audio.AudioSpecificConfig{Type: 2, SampleRate: 48000, ChannelCount: 2, ChannelConfig: 2}
		formats := []format.Format{
			&format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: sps, PPS: pps},
			&format.MPEG4Audio{PayloadTyp: 97, Config: aacCfg, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3},
			&format.H265{PayloadTyp: 98},
			&format.Opus{PayloadTyp: 99, ChannelCount: 2},
		}
		srv := &Server{Hub: hub, readTimeout: time.Second}
		var dec rtptime.GlobalDecoder
		dec.Initialize()
		sess := &session{srv: srv, key: testKey, log: log, recording: true}
		sess.packetPTS = func(m *description.Media, pkt *rtp.Packet) (int64, bool) {
			return dec.Decode(m.Formats[0], pkt)
		}
		for _, fo := range formats {
			tr, _ := newTrack(&description.Media{Formats: []format.Format{fo}})
			if tr == nil {
				t.Fatalf("format %s not supported", fo.Codec())
			}
			tr.mt.ID = len(sess.tracks)
			sess.tracks = append(sess.tracks, tr)
		}
		// The H.265 track has no parameter sets: this exercises the
		// deferred publish path with in-band parameter sets too.
		var seq uint16
		var ts uint32
		for len(data) >= 3 {
			ti := int(data[0]) % len(sess.tracks)
			n := int(data[1])<<8 | int(data[2])
			data = data[3:]
			n = min(n, len(data))
			payload := data[:n]
			data = data[n:]
			seq++
			ts += 3000
			pkt := &rtp.Packet{
				Header:  rtp.Header{Version: 2, PayloadType: formats[ti].PayloadType(), SequenceNumber: seq, Timestamp: ts, Marker: seq%2 == 0},
				Payload: payload,
			}
			sess.onPacket(sess.tracks[ti], pkt)
		}
		sess.mu.Lock()
		reason := sess.reason
		sess.mu.Unlock()
		if reason != nil && reason.Error() == "internal error while processing media" {
			t.Fatalf("depacketizing panicked:\n%s", logs.String())
		}
		sess.close(nil)
		for _, rs := range rec.all() {
			units, closed := rs.snapshot()
			if closed != 1 {
				t.Fatalf("stream closed %d times", closed)
			}
			for _, u := range units {
				if u.DTS < 0 || u.PTS < u.DTS-time.Second {
					t.Fatalf("bad timestamps PTS %v DTS %v", u.PTS, u.DTS)
				}
				if !u.Track.Codec.IsVideo() && len(u.Payload) != 1 {
					t.Fatalf("audio unit with %d frames", len(u.Payload))
				}
			}
		}
	})
}
