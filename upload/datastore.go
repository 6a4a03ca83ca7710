package upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"

	"github.com/tus/tusd/v2/pkg/filestore"
	tusd "github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"

	"github.com/streamd/streamd/store"
)

// dataStore is tusd's filestore (uploads in progress under TempDir) plus
// what streamd adds: an upload is visible only to its owner, and a finished
// upload is stored in the object store before the last PATCH is answered.
//
// A finished upload leaves {id}.done in TempDir (JSON: the Upload and
// whether OnComplete succeeded), so that HEAD still answers "complete"
// after the data has moved, and a failure half-way (storing, or
// OnComplete) is retried by the client's next HEAD or PATCH: tusd answers
// those from GetUpload, which finishes what was left.
type dataStore struct {
	fs filestore.FileStore
	h  *Handler
	// locker is tusd's: the sweeper takes an upload's lock too.
	locker *memorylocker.MemoryLocker
}

var (
	_ tusd.DataStore           = (*dataStore)(nil)
	_ tusd.TerminaterDataStore = (*dataStore)(nil)
)

// rooted is the folder object store (fsstore.Store): a finished upload on
// the same file system is renamed into place instead of copied.
type rooted interface{ Root() string }

type doneRecord struct {
	Upload   Upload `json:"upload"`
	Notified bool   `json:"notified"`
}

func (d *dataStore) donePath(id string) string { return filepath.Join(d.fs.Path, id+".done") }

func (d *dataStore) readDone(id string) (doneRecord, bool, error) {
	b, err := os.ReadFile(d.donePath(id))
	if errors.Is(err, os.ErrNotExist) {
		return doneRecord{}, false, nil
	}
	if err != nil {
		return doneRecord{}, false, err
	}
	var rec doneRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return doneRecord{}, false, fmt.Errorf("%s: %w", d.donePath(id), err)
	}
	return rec, true, nil
}

func (d *dataStore) writeDone(rec doneRecord) error {
	b, _ := json.Marshal(rec)
	tmp := d.donePath(rec.Upload.ID) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, d.donePath(rec.Upload.ID))
}

func (d *dataStore) NewUpload(ctx context.Context, info tusd.FileInfo) (tusd.Upload, error) {
	up, err := d.fs.NewUpload(ctx, info)
	if err != nil {
		return nil, err
	}
	return &pending{Upload: up, d: d}, nil
}

func (d *dataStore) GetUpload(ctx context.Context, id string) (tusd.Upload, error) {
	if !reUploadID.MatchString(id) {
		return nil, tusd.ErrNotFound
	}
	rec, ok, err := d.readDone(id)
	if err != nil {
		return nil, d.internal(ctx, "read upload state", err)
	}
	if ok {
		if !mayAccess(ctx, rec.Upload.UserID) {
			return nil, tusd.ErrNotFound
		}
		if !rec.Notified {
			if err := d.notify(ctx, rec); err != nil {
				return nil, err
			}
		}
		return &finished{u: rec.Upload}, nil
	}
	up, err := d.fs.GetUpload(ctx, id)
	if err != nil {
		return nil, err
	}
	info, err := up.GetInfo(ctx)
	if err != nil {
		return nil, err
	}
	if !mayAccess(ctx, info.MetaData["user_id"]) {
		return nil, tusd.ErrNotFound
	}
	if info.Offset == info.Size {
		// All bytes arrived but storing them did not finish (an
		// error, or the process stopped): finish now.
		u, err := d.finish(ctx, info)
		if err != nil {
			return nil, err
		}
		return &finished{u: u}, nil
	}
	return &pending{Upload: up, d: d}, nil
}

func (d *dataStore) AsTerminatableUpload(up tusd.Upload) tusd.TerminatableUpload {
	switch u := up.(type) {
	case *pending:
		return d.fs.AsTerminatableUpload(u.Upload)
	case *finished:
		// The master belongs to its content now: forget the upload only.
		return terminateFunc(func(ctx context.Context) error {
			err := os.Remove(d.donePath(u.u.ID))
			if errors.Is(err, os.ErrNotExist) {
				err = nil
			}
			return err
		})
	}
	panic(fmt.Sprintf("upload: unexpected %T", up))
}

type terminateFunc func(ctx context.Context) error

func (f terminateFunc) Terminate(ctx context.Context) error { return f(ctx) }

// finish stores the finished upload, records it and calls OnComplete.
func (d *dataStore) finish(ctx context.Context, info tusd.FileInfo) (Upload, error) {
	u := Upload{
		ID:          info.ID,
		Size:        info.Size,
		Filename:    info.MetaData["filename"],
		ContentType: info.MetaData["filetype"],
		UserID:      info.MetaData["user_id"],
		Visibility:  info.MetaData["visibility"],
	}
	if u.Filename == "" {
		u.Filename = "master"
	}
	u.Key = MasterPrefix + u.ID + "/" + u.Filename
	if _, err := store.CleanKey(u.Key); err != nil {
		return Upload{}, d.internal(ctx, "master key", err)
	}
	bin := info.Storage[filestore.StorageKeyPath]
	// Storing 40 GB takes minutes: a client that gives up meanwhile must
	// not waste them (its retry finds the upload stored).
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.h.cfg.FinishTimeout)
	defer cancel()
	if err := d.store(sctx, bin, u); err != nil {
		return Upload{}, d.internal(ctx, "store master", err)
	}
	rec := doneRecord{Upload: u}
	if err := d.writeDone(rec); err != nil {
		return Upload{}, d.internal(ctx, "record finished upload", err)
	}
	os.Remove(bin)
	os.Remove(info.Storage[filestore.StorageKeyInfoPath])
	d.h.log.InfoContext(ctx, "upload stored", "id", u.ID, "key", u.Key, "size", u.Size, "user", u.UserID)
	if err := d.notify(sctx, rec); err != nil {
		return Upload{}, err
	}
	return u, nil
}

// store puts the file at bin under u.Key: a rename on the folder store
// when the temp folder is on the same file system, a streamed Put
// otherwise (the S3 store sends it as a multipart upload, a part at a
// time).
func (d *dataStore) store(ctx context.Context, bin string, u Upload) error {
	fi, err := os.Stat(bin)
	if err != nil {
		return err
	}
	if fi.Size() != u.Size {
		return fmt.Errorf("upload %s: %d bytes on disk, %d declared", u.ID, fi.Size(), u.Size)
	}
	if r, ok := d.h.cfg.Objects.(rooted); ok {
		dst := filepath.Join(r.Root(), filepath.FromSlash(u.Key))
		err := renameDurably(bin, dst, r.Root())
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EXDEV) {
			return err
		}
		// Another file system: copy through Put.
	}
	f, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	return d.h.cfg.Objects.Put(ctx, u.Key, f, u.Size, contentType(u))
}

// notify calls OnComplete and records that it succeeded.
func (d *dataStore) notify(ctx context.Context, rec doneRecord) error {
	if d.h.cfg.OnComplete != nil {
		if err := d.h.cfg.OnComplete(ctx, rec.Upload); err != nil {
			d.h.log.ErrorContext(ctx, "upload stored but its completion hook failed; the client's retry calls it again",
				"id", rec.Upload.ID, "key", rec.Upload.Key, "err", err)
			return errRetry
		}
	}
	rec.Notified = true
	if err := d.writeDone(rec); err != nil {
		return d.internal(ctx, "record finished upload", err)
	}
	return nil
}

var errRetry = tusd.NewError("ERR_FINISH_FAILED",
	"the upload is complete but could not be stored yet; retry (HEAD, then PATCH at the offset it gives)",
	http.StatusInternalServerError)

// internal logs err and answers a 500 without internal details (paths).
func (d *dataStore) internal(ctx context.Context, what string, err error) error {
	d.h.log.ErrorContext(ctx, "upload: "+what, "err", err)
	return errRetry
}

// pending is an upload in progress: filestore's, finishing into the object
// store.
type pending struct {
	tusd.Upload
	d *dataStore
}

func (p *pending) FinishUpload(ctx context.Context) error {
	info, err := p.Upload.GetInfo(ctx)
	if err != nil {
		return err
	}
	_, err = p.d.finish(ctx, info)
	return err
}

// finished is an upload whose master is stored: complete for HEAD and
// PATCH, no data of its own any more.
type finished struct{ u Upload }

func (f *finished) GetInfo(context.Context) (tusd.FileInfo, error) {
	return tusd.FileInfo{
		ID: f.u.ID, Size: f.u.Size, Offset: f.u.Size,
		MetaData: tusd.MetaData{"filename": f.u.Filename, "key": f.u.Key},
	}, nil
}

func (f *finished) WriteChunk(context.Context, int64, io.Reader) (int64, error) {
	return 0, tusd.ErrSizeExceeded
}

func (f *finished) GetReader(context.Context) (io.ReadCloser, error) {
	return nil, tusd.ErrNotImplemented
}

func (f *finished) FinishUpload(context.Context) error { return nil }
