package upload

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/streamd/streamd/store"
)

// expire aborts presigned multipart uploads nobody has added a part to
// since cutoff, and drops their state. It starts from streamd's own state
// objects, not from the bucket's list of incomplete uploads, because MinIO
// lists those only for one exact key, never by prefix. The bucket's list
// is read as well, for S3 stores that do list by prefix: it also finds
// uploads a crash left without a state object (an s3store Put of a
// finished tus upload, cut short).
func (m *multipart) expire(ctx context.Context, cutoff time.Time) error {
	live := map[string]bool{} // S3 upload IDs still in use or already handled
	states, err := m.h.cfg.Objects.List(ctx, multipartStatePrefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, o := range states {
		id, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, multipartStatePrefix), ".json")
		if !ok || !reUploadID.MatchString(id) {
			continue
		}
		st, err := m.readState(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue // completed or aborted meanwhile
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		live[st.S3ID] = true
		started := time.Unix(st.Created, 0)
		if err := m.expireUpload(ctx, id, m.prefix+st.Upload.Key, st.S3ID, started, cutoff); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, m.expireListed(ctx, cutoff, live))...)
}

// expireListed aborts stale uploads under masters/ that the bucket lists
// and no state object names.
func (m *multipart) expireListed(ctx context.Context, cutoff time.Time, known map[string]bool) error {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine on an early return
	for u := range m.core.Client.ListIncompleteUploads(lctx, m.bucket, m.prefix+MasterPrefix, true) {
		if u.Err != nil {
			return u.Err
		}
		if known[u.UploadID] || !strings.HasPrefix(u.Key, m.prefix+MasterPrefix) {
			continue
		}
		// masters/{id}/{filename}: the id is the upload's, when it is one.
		id, _, _ := strings.Cut(strings.TrimPrefix(u.Key, m.prefix+MasterPrefix), "/")
		if !reUploadID.MatchString(id) {
			id = ""
		}
		if err := m.expireUpload(ctx, id, u.Key, u.UploadID, u.Initiated, cutoff); err != nil {
			return err
		}
	}
	return nil
}

// expireUpload aborts one multipart upload when neither its start nor its
// newest part is after cutoff, and removes the state of id (if not "").
func (m *multipart) expireUpload(ctx context.Context, id, object, s3id string, started, cutoff time.Time) error {
	if started.After(cutoff) {
		return nil
	}
	last, held, gone, err := m.partActivity(ctx, object, s3id)
	if err != nil {
		return err
	}
	if last.Before(started) {
		last = started
	}
	if last.After(cutoff) {
		return nil
	}
	if !gone {
		err := m.core.AbortMultipartUpload(ctx, m.bucket, object, s3id)
		if err != nil && minio.ToErrorResponse(err).Code != "NoSuchUpload" {
			return err
		}
	}
	if id != "" {
		if err := m.h.cfg.Objects.Delete(ctx, multipartStatePrefix+id+".json"); err != nil {
			return err
		}
	}
	m.h.log.InfoContext(ctx, "abandoned upload expired", "id", id, "age", m.h.now().Sub(last).Round(time.Second),
		"bytes", held, "key", strings.TrimPrefix(object, m.prefix), "s3_upload_id", s3id, "where", "s3")
	return nil
}

// partActivity is when the newest part of an S3 upload arrived and how
// many bytes its parts hold; gone when S3 no longer knows the upload
// (aborted by a bucket rule, or completed by another process).
func (m *multipart) partActivity(ctx context.Context, object, s3id string) (last time.Time, held int64, gone bool, err error) {
	marker := 0
	for {
		res, err := m.core.ListObjectParts(ctx, m.bucket, object, s3id, marker, 1000)
		if minio.ToErrorResponse(err).Code == "NoSuchUpload" {
			return last, held, true, nil
		}
		if err != nil {
			return last, held, false, err
		}
		for _, p := range res.ObjectParts {
			held += p.Size
			if p.LastModified.After(last) {
				last = p.LastModified
			}
		}
		if !res.IsTruncated {
			return last, held, false, nil
		}
		marker = res.NextPartNumberMarker
	}
}

// readState loads the state object of multipart upload id.
func (m *multipart) readState(ctx context.Context, id string) (mpState, error) {
	rc, _, err := m.h.cfg.Objects.Get(ctx, multipartStatePrefix+id+".json", nil)
	if err != nil {
		return mpState{}, err
	}
	defer rc.Close()
	var st mpState
	err = json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&st)
	return st, err
}
