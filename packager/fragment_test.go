package packager

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
)

// marshalFragment must write exactly what fmp4.Part.Marshal writes.
func TestMarshalFragmentMatchesLibrary(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sample := func(nonSync bool, cto int32) *fmp4.Sample {
		p := make([]byte, rng.IntN(3000))
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		return &fmp4.Sample{Duration: uint32(rng.IntN(4000)), PTSOffset: cto, IsNonSyncSample: nonSync, Payload: p}
	}
	cases := map[string]fmp4.Part{}
	// video with B-frames (negative and positive offsets) + audio
	var video, audio []*fmp4.Sample
	for i := range 60 {
		video = append(video, sample(i%30 != 0, int32(rng.IntN(9000)-3000)))
	}
	for range 90 {
		audio = append(audio, sample(false, 0))
	}
	cases["video+audio"] = fmp4.Part{SequenceNumber: 7, Tracks: []*fmp4.PartTrack{
		{ID: 1, BaseTime: 1 << 40, Samples: video}, {ID: 2, BaseTime: 12345, Samples: audio}}}
	cases["audio only"] = fmp4.Part{SequenceNumber: 1, Tracks: []*fmp4.PartTrack{{ID: 1, Samples: audio}}}
	// all keyframes, no reordering: neither sample flags nor offsets
	var intra []*fmp4.Sample
	for range 10 {
		intra = append(intra, sample(false, 0))
	}
	cases["intra"] = fmp4.Part{SequenceNumber: 3, Tracks: []*fmp4.PartTrack{{ID: 2, BaseTime: 99, Samples: intra}}}
	// a non-sync sample without offsets, offsets without non-sync
	cases["flags only"] = fmp4.Part{SequenceNumber: 4, Tracks: []*fmp4.PartTrack{{ID: 1, Samples: []*fmp4.Sample{sample(false, 0), sample(true, 0)}}}}
	cases["cto only"] = fmp4.Part{SequenceNumber: 5, Tracks: []*fmp4.PartTrack{{ID: 1, Samples: []*fmp4.Sample{sample(false, 0), sample(false, -1)}}}}
	cases["empty payloads"] = fmp4.Part{SequenceNumber: 6, Tracks: []*fmp4.PartTrack{{ID: 1, Samples: []*fmp4.Sample{{Duration: 1}, {Duration: 2, Payload: []byte{}}}}, {ID: 2, Samples: intra[:1]}}}
	for name, p := range cases {
		var w seekablebuffer.Buffer
		if err := p.Marshal(&w); err != nil {
			t.Fatal(err)
		}
		got := marshalFragment(&p)
		if !bytes.Equal(got, w.Bytes()) {
			t.Errorf("%s: %d bytes differ from the library's %d", name, len(got), w.Len())
		}
		if cap(got) != len(got) {
			t.Errorf("%s: buffer of %d for %d bytes", name, cap(got), len(got))
		}
	}
}
