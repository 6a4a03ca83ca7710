package rtmp

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/message"
)

// chunk0 is a type 0 chunk header on chunk stream csid announcing a
// message of length bytes, followed by body.
func chunk0(csid byte, length int, typ byte, body []byte) []byte {
	h := []byte{csid, 0, 0, 0, byte(length >> 16), byte(length >> 8), byte(length), typ, 0, 0, 0, 0}
	return append(h, body...)
}

// setChunkSize is a whole Set Chunk Size message on chunk stream 2.
func setChunkSize(v uint32) []byte {
	return chunk0(2, 4, typeSetChunkSize, []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// parseAll runs the parser over b and returns how many bytes it framed.
func parseAll(p *chunkParser, b []byte) (int, error) {
	done := 0
	for {
		n, err := p.next(b[done:])
		if err != nil || n == 0 {
			return done, err
		}
		done += n
	}
}

func TestChunkParserLimits(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := []struct {
		name    string
		in      []byte
		authed  bool
		refused string // part of the refusal, "" when accepted
	}{
		{"obs chunk size", setChunkSize(4096), false, ""},
		{"largest chunk size", setChunkSize(maxChunkSize), false, ""},
		{"chunk size 10 MiB", setChunkSize(10 << 20), false, "chunk size 10485760 requested"},
		{"chunk size 0", setChunkSize(0), false, "chunk size 0 requested"},
		{"chunk size 127", setChunkSize(127), false, "chunk size 127"},
		{"command at the setup limit", chunk0(3, maxSetupMessage, 20, nil), false, ""},
		{"big message before the key", chunk0(3, maxSetupMessage+1, 20, nil), false, "before the stream key was accepted"},
		{"big message after the key", chunk0(6, maxSetupMessage+1, 9, nil), true, ""},
		{"10 MiB message after the key", chunk0(6, 10<<20, 9, nil), true, "message of 10485760 bytes announced, limit 8388608"},
		{"10 MiB after a chunk size", cat(setChunkSize(maxChunkSize), chunk0(3, 10<<20, 20, make([]byte, 10))), false, "message of 10485760 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newChunkParser()
			p.authed = tc.authed
			_, err := parseAll(&p, tc.in)
			var ge *guardError
			switch {
			case tc.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refused != "" && (!errors.As(err, &ge) || !strings.Contains(err.Error(), tc.refused)):
				t.Fatalf("got %v, want a refusal containing %q", err, tc.refused)
			}
		})
	}
}

// The guard holds an incomplete chunk back from the library: memory is
// spent on the bytes that arrived, not on the announced size.
func TestGuardHoldsIncompleteChunk(t *testing.T) {
	in := append(setChunkSize(maxChunkSize), chunk0(3, maxSetupMessage, 20, make([]byte, 10))...)
	g := newGuardConn(bytes.NewReader(in), io.Discard)
	g.hsLeft = 0
	got, err := io.ReadAll(g)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
	if !bytes.Equal(got, setChunkSize(maxChunkSize)) {
		t.Fatalf("guard released %d bytes, want only the Set Chunk Size message", len(got))
	}
	if cap(g.buf) > 2*guardMinRead {
		t.Fatalf("guard buffer grew to %d bytes for %d received", cap(g.buf), len(in))
	}
}

func TestGuardRefusesRTMPE(t *testing.T) {
	g := newGuardConn(bytes.NewReader(append([]byte{rtmpeVersion}, make([]byte, 1536)...)), io.Discard)
	_, err := g.Read(make([]byte, 10))
	var ge *guardError
	if !errors.As(err, &ge) || !strings.Contains(err.Error(), "RTMPE") {
		t.Fatalf("err = %v, want an RTMPE refusal", err)
	}
}

// readMessages reads messages with gortmplib's reader until it fails.
func readMessages(r io.Reader) ([]message.Message, error) {
	bcr := bytecounter.NewReader(r)
	mr := message.NewReader(bcr, bcr, func(uint32) error { return nil })
	var out []message.Message
	for {
		msg, err := mr.Read()
		if err != nil {
			return out, err
		}
		out = append(out, msg)
	}
}

// guardSeeds are chunk streams (no handshake) as real peers write them,
// plus a few hostile ones.
func guardSeeds(t testing.TB) [][]byte {
	write := func(msgs ...message.Message) []byte {
		var buf bytes.Buffer // a fresh writer: each seed starts a connection
		mw := message.NewWriter(&buf, bytecounter.NewWriter(io.Discard), false)
		for _, m := range msgs {
			if err := mw.Write(m); err != nil {
				t.Fatal(err)
			}
		}
		return buf.Bytes()
	}
	video := func(dts time.Duration, n int) *message.Video {
		return &message.Video{ChunkStreamID: 6, MessageStreamID: 1 << 24, Codec: message.CodecH264,
			Type: message.VideoTypeAU, DTS: dts, AU: bytes.Repeat([]byte{0, 0, 0, 1, 0x65}, n/5)}
	}
	audio := func(dts time.Duration) *message.Audio {
		return &message.Audio{ChunkStreamID: 4, MessageStreamID: 1 << 24, Codec: message.CodecMPEG4Audio,
			Rate: message.AudioRate44100, Depth: message.AudioDepth16, IsStereo: true,
			AACType: message.AudioAACTypeAU, DTS: dts, AU: make([]byte, 300)}
	}
	connect := &message.CommandAMF0{ChunkStreamID: 3, Name: "connect", CommandID: 1,
		Arguments: []any{amf0.Object{{Key: "app", Value: "live"}, {Key: "tcUrl", Value: "rtmp://h/live"}}}}
	return [][]byte{
		write(connect, video(0, 1000), audio(20*time.Millisecond), video(33*time.Millisecond, 1000)),
		write(&message.SetChunkSize{Value: 4096}, connect, video(0, 10000), audio(0), video(40*time.Millisecond, 9000)),
		// Timestamps past 0xFFFFFF ms: extended timestamps, also on type 3 chunks.
		write(video(5*time.Hour, 600), audio(5*time.Hour), video(5*time.Hour+40*time.Millisecond, 600)),
		// A message aborted half way, then the stream reused.
		bytes.Join([][]byte{chunk0(4, 300, 8, make([]byte, 128)), chunk0(2, 4, typeAbortMessage, []byte{0, 0, 0, 4}),
			{0xc4}, chunk0(4, 2, 8, []byte{0xaf, 1})}, nil),
		append(setChunkSize(10<<20), chunk0(3, 10<<20, 20, make([]byte, 10))...),
		{0x00, 1, 2}, {0xc3, 0, 0}, {0x43, 0, 0, 0, 0, 0, 1, 9},
	}
}

// The guard frames chunks exactly as gortmplib does: through it, the
// library reads the same messages as without it.
func TestGuardMatchesLibrary(t *testing.T) {
	for i, seed := range guardSeeds(t) {
		checkGuardMatchesLibrary(t, seed, i < 3)
	}
}

func checkGuardMatchesLibrary(t *testing.T, data []byte, wantAll bool) {
	t.Helper()
	g := newGuardConn(bytes.NewReader(data), io.Discard)
	g.hsLeft = 0
	g.authorize()
	via, gerr := readMessages(g)
	var ge *guardError
	if errors.As(gerr, &ge) {
		return // refused: the library was spared what follows
	}
	direct, derr := readMessages(bytes.NewReader(data))
	if !reflect.DeepEqual(via, direct) {
		t.Fatalf("through the guard %d messages (%v), directly %d (%v)", len(via), gerr, len(direct), derr)
	}
	if wantAll && (!errors.Is(gerr, io.EOF) || len(via) == 0) {
		t.Fatalf("well-formed stream: %d messages, then %v", len(via), gerr)
	}
}
