package vod

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// checkFiles checks that the init segment and every media segment a
// rendition's playlist names exist and are whole ISO BMFF files. It runs
// before ffprobe, which reports a missing init segment only as "does not
// decode", and which decodes a cut-short last fragment without complaint
// when the frames lost fit in the duration tolerance: a player fetching
// that file gets a broken fragment all the same. Each case gets its own
// reason, naming the file, so the operator knows the output (not the
// input) is at fault.
func checkFiles(dir string, r Rendition, mp *playlist.Media) error {
	type file struct {
		uri, what string
		need      []string // box types it must hold
	}
	base := path.Dir(r.Playlist())
	files := []file{{mp.Map.URI, "init segment", []string{"ftyp", "moov"}}}
	for _, s := range mp.Segments {
		files = append(files, file{s.URI, "segment", []string{"moof", "mdat"}})
	}
	for _, f := range files {
		rel := path.Join(base, f.uri)
		if !filepath.IsLocal(filepath.FromSlash(rel)) {
			return fmt.Errorf("rendition %s: %s %s is outside the output folder", r.Name, f.what, f.uri)
		}
		boxes, err := topBoxes(filepath.Join(dir, filepath.FromSlash(rel)))
		switch {
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("rendition %s: %s %s is missing", r.Name, f.what, rel)
		case err != nil:
			return fmt.Errorf("rendition %s: %s %s is truncated (%v)", r.Name, f.what, rel, err)
		}
		for _, want := range f.need {
			if !slices.Contains(boxes, want) {
				return fmt.Errorf("rendition %s: %s %s is truncated (no %s box)", r.Name, f.what, rel, want)
			}
		}
	}
	return nil
}

// topBoxes lists the types of a file's top-level ISO BMFF boxes. A box
// that claims more bytes than the file has left is an error: the file
// was cut short. Only the headers are read.
func topBoxes(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var types []string
	var hdr [16]byte
	for off, end := int64(0), fi.Size(); off < end; {
		if end-off < 8 {
			return types, fmt.Errorf("%d stray bytes at offset %d", end-off, off)
		}
		if _, err := f.ReadAt(hdr[:8], off); err != nil {
			return types, err
		}
		size, typ := int64(binary.BigEndian.Uint32(hdr[:4])), string(hdr[4:8])
		switch size {
		case 0: // to the end of the file
			size = end - off
		case 1: // a 64-bit size follows
			if _, err := f.ReadAt(hdr[8:16], off+8); err != nil {
				return types, fmt.Errorf("box %s at offset %d: %w", typ, off, noEOF(err))
			}
			size = int64(binary.BigEndian.Uint64(hdr[8:16]))
		}
		if size < 8 || size > end-off {
			return types, fmt.Errorf("box %s at offset %d claims %d bytes, %d left", typ, off, size, end-off)
		}
		types = append(types, typ)
		off += size
	}
	return types, nil
}

// noEOF turns a short read into an error that says so.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
