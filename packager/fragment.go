package packager

import (
	"encoding/binary"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
)

// trun flags and sample flags, as fmp4.Part.Marshal writes them.
const (
	trunDataOffset  = 0x01
	trunDuration    = 0x100
	trunSize        = 0x200
	trunFlags       = 0x400
	trunCTO         = 0x800
	sampleNonSync   = 1 << 16
	tfhdDefaultBase = 0x020000 // default-base-is-moof
	fullBoxV1       = 1 << 24
	boxHeaderLen    = 8
	mfhdLen         = boxHeaderLen + 4 + 4
	tfhdLen         = boxHeaderLen + 4 + 4
	tfdtLen         = boxHeaderLen + 4 + 8
	trunFixedLen    = boxHeaderLen + 4 + 4 + 4 // + entries
	trafFixedLen    = boxHeaderLen + tfhdLen + tfdtLen + trunFixedLen
	moofFixedLen    = boxHeaderLen + mfhdLen // + trafs
	maxBoxSize      = 1<<32 - 1
)

// marshalFragment encodes p as moof+mdat, byte for byte what
// fmp4.Part.Marshal writes (the tests compare the two), into one buffer
// of the exact size: no reflection-driven box marshalling, no
// intermediate copy of the media data and no buffer regrowth, which made
// up most of a segment's packaging cost.
func marshalFragment(p *fmp4.Part) []byte {
	moofLen := moofFixedLen
	dataLen := 0
	trunFlagsOf := make([]uint32, len(p.Tracks))
	for i, t := range p.Tracks {
		flags := uint32(trunDataOffset | trunDuration | trunSize)
		for _, smp := range t.Samples {
			if smp.IsNonSyncSample {
				flags |= trunFlags
			}
			if smp.PTSOffset != 0 {
				flags |= trunCTO
			}
			dataLen += len(smp.Payload)
		}
		trunFlagsOf[i] = flags
		moofLen += trafFixedLen + len(t.Samples)*entryLen(flags)
	}
	if moofLen+boxHeaderLen+dataLen > maxBoxSize {
		return marshalFragmentSlow(p)
	}

	b := make([]byte, 0, moofLen+boxHeaderLen+dataLen)
	b = appendBoxHeader(b, moofLen, "moof")
	b = appendBoxHeader(b, mfhdLen, "mfhd")
	b = binary.BigEndian.AppendUint32(b, 0) // version, flags
	b = binary.BigEndian.AppendUint32(b, p.SequenceNumber)
	dataOffset := moofLen + boxHeaderLen // from the moof's start to the mdat's payload
	for i, t := range p.Tracks {
		flags := trunFlagsOf[i]
		trunLen := trunFixedLen + len(t.Samples)*entryLen(flags)
		b = appendBoxHeader(b, boxHeaderLen+tfhdLen+tfdtLen+trunLen, "traf")
		b = appendBoxHeader(b, tfhdLen, "tfhd")
		b = binary.BigEndian.AppendUint32(b, tfhdDefaultBase)
		b = binary.BigEndian.AppendUint32(b, uint32(t.ID))
		b = appendBoxHeader(b, tfdtLen, "tfdt")
		b = binary.BigEndian.AppendUint32(b, fullBoxV1)
		b = binary.BigEndian.AppendUint64(b, t.BaseTime)
		b = appendBoxHeader(b, trunLen, "trun")
		b = binary.BigEndian.AppendUint32(b, fullBoxV1|flags)
		b = binary.BigEndian.AppendUint32(b, uint32(len(t.Samples)))
		b = binary.BigEndian.AppendUint32(b, uint32(int32(dataOffset)))
		for _, smp := range t.Samples {
			b = binary.BigEndian.AppendUint32(b, smp.Duration)
			b = binary.BigEndian.AppendUint32(b, uint32(len(smp.Payload)))
			if flags&trunFlags != 0 {
				var sf uint32
				if smp.IsNonSyncSample {
					sf = sampleNonSync
				}
				b = binary.BigEndian.AppendUint32(b, sf)
			}
			if flags&trunCTO != 0 {
				b = binary.BigEndian.AppendUint32(b, uint32(smp.PTSOffset))
			}
			dataOffset += len(smp.Payload)
		}
	}
	b = appendBoxHeader(b, boxHeaderLen+dataLen, "mdat")
	for _, t := range p.Tracks {
		for _, smp := range t.Samples {
			b = append(b, smp.Payload...)
		}
	}
	return b
}

// entryLen is the size of one trun entry with the given trun flags.
func entryLen(f uint32) int {
	n := 8 // duration, size
	if f&trunFlags != 0 {
		n += 4
	}
	if f&trunCTO != 0 {
		n += 4
	}
	return n
}

// marshalFragmentSlow is the library's encoder, for fragments too large for
// 32-bit box sizes (never at live segment durations). nil if it fails.
func marshalFragmentSlow(p *fmp4.Part) []byte {
	var w seekablebuffer.Buffer
	if err := p.Marshal(&w); err != nil {
		return nil
	}
	return w.Bytes()
}

func appendBoxHeader(b []byte, size int, typ string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	return append(b, typ...)
}
