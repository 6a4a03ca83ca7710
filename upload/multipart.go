package upload

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/streamd/streamd/store"
)

// S3Config names the bucket for presigned multipart uploads: the same
// settings as the S3 object store (storage.objects.*). streamd's store
// interface has no multipart capability, so this package talks to the
// bucket itself; the keys it writes are the store's (Prefix + key).
type S3Config struct {
	Endpoint  string // host:port
	Bucket    string
	Region    string
	AccessKey string
	SecretKey string
	UseSSL    bool
	Prefix    string
}

// S3 limits: parts of 5 MiB to 5 GiB (the last may be smaller), at most
// 10,000 of them, objects of at most 5 TiB.
const (
	minPartSize     = 5 << 20
	maxPartSize     = 5 << 30
	maxParts        = 10000
	maxObjectSize   = 5 << 40
	defaultPartSize = 64 << 20
	// multipartStatePrefix holds one small JSON object per multipart
	// upload in progress, in the object store itself so that every
	// streamd process serving the API sees it.
	multipartStatePrefix = "uploads/multipart/"
)

type multipart struct {
	h      *Handler
	core   minio.Core
	bucket string
	prefix string
}

func newMultipart(h *Handler, cfg S3Config) (*multipart, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("upload: S3 multipart needs storage.objects.endpoint and bucket")
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.UseSSL,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("storage.objects.endpoint %q: %w", cfg.Endpoint, err)
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &multipart{h: h, core: minio.Core{Client: c}, bucket: cfg.Bucket, prefix: prefix}, nil
}

// mpState is what a multipart upload in progress keeps.
type mpState struct {
	Upload   Upload `json:"upload"`
	S3ID     string `json:"s3_upload_id"`
	PartSize int64  `json:"part_size"`
	Parts    int    `json:"parts"`
	Created  int64  `json:"created"`
}

// StartRequest is the body of POST {base}multipart.
type StartRequest struct {
	Filename    string `json:"filename"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type,omitempty"`
	// Visibility of the catalog item: public (default) or protected.
	Visibility string `json:"visibility,omitempty"`
	// PartSize is optional (bytes, at least 5 MiB); default 64 MiB, more
	// when the file needs more than 10,000 parts.
	PartSize int64 `json:"part_size,omitempty"`
}

// Part is one presigned part: PUT its Size bytes (the file's bytes
// [(Number-1)*PartSize, ...)) to URL.
type Part struct {
	Number int    `json:"number"`
	Size   int64  `json:"size"`
	URL    string `json:"url"`
}

// StartResponse answers POST {base}multipart.
type StartResponse struct {
	ID          string    `json:"id"`
	Key         string    `json:"key"`
	PartSize    int64     `json:"part_size"`
	Parts       []Part    `json:"parts"`
	ExpiresAt   time.Time `json:"expires_at"`
	CompleteURL string    `json:"complete_url"`
}

func (m *multipart) serve(w http.ResponseWriter, r *http.Request, rest string) {
	switch {
	case rest == "" && r.Method == http.MethodPost:
		m.start(w, r)
	case strings.HasSuffix(rest, "/complete") && r.Method == http.MethodPost:
		m.complete(w, r, strings.TrimSuffix(rest, "/complete"))
	case reUploadID.MatchString(rest) && r.Method == http.MethodDelete:
		m.abort(w, r, rest)
	default:
		writeError(w, http.StatusNotFound, "not_found", "no such multipart route (POST multipart, POST multipart/{id}/complete, DELETE multipart/{id})")
	}
}

func (m *multipart) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	m.h.log.ErrorContext(r.Context(), "multipart upload: "+what, "err", err)
	writeError(w, http.StatusBadGateway, "unavailable", "the object store failed to "+what+"; try again")
}

func (m *multipart) start(w http.ResponseWriter, r *http.Request) {
	var req StartRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "body: want JSON {filename, size, content_type?, part_size?}")
		return
	}
	switch {
	case req.Size <= 0:
		writeError(w, http.StatusBadRequest, "invalid_argument", "size: the file's size in bytes is required")
		return
	case m.h.cfg.MaxSize > 0 && req.Size > m.h.cfg.MaxSize:
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", tooLarge(req.Size, m.h.cfg.MaxSize))
		return
	case req.Size > maxObjectSize:
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", tooLarge(req.Size, maxObjectSize))
		return
	case !validVisibility(req.Visibility):
		writeError(w, http.StatusBadRequest, "invalid_argument", errVisibility)
		return
	case req.PartSize != 0 && (req.PartSize < minPartSize || req.PartSize > maxPartSize):
		writeError(w, http.StatusBadRequest, "invalid_argument", "part_size: between 5 MiB and 5 GiB")
		return
	}
	partSize := req.PartSize
	if partSize == 0 {
		partSize = defaultPartSize
	}
	if need := (req.Size + maxParts - 1) / maxParts; partSize < need {
		partSize = (need + 1<<20 - 1) &^ (1<<20 - 1) // whole MiB
	}
	nparts := int((req.Size + partSize - 1) / partSize)

	id, _ := identityFrom(r.Context())
	u := Upload{ID: newID(), Size: req.Size, Filename: cleanFilename(req.Filename), UserID: id.UserID, Visibility: req.Visibility}
	if req.ContentType != "" && len(req.ContentType) < 200 {
		u.ContentType = req.ContentType
	}
	u.Key = MasterPrefix + u.ID + "/" + u.Filename
	ctx := r.Context()
	s3id, err := m.core.NewMultipartUpload(ctx, m.bucket, m.prefix+u.Key, minio.PutObjectOptions{ContentType: contentType(u)})
	if err != nil {
		m.fail(w, r, "start a multipart upload", err)
		return
	}
	st := mpState{Upload: u, S3ID: s3id, PartSize: partSize, Parts: nparts, Created: time.Now().Unix()}
	if err := m.saveState(ctx, st); err != nil {
		m.core.AbortMultipartUpload(context.WithoutCancel(ctx), m.bucket, m.prefix+u.Key, s3id)
		m.fail(w, r, "record the multipart upload", err)
		return
	}
	resp := StartResponse{ID: u.ID, Key: u.Key, PartSize: partSize, ExpiresAt: time.Now().Add(m.h.cfg.PresignExpiry).UTC().Truncate(time.Second)}
	for n := 1; n <= nparts; n++ {
		q := url.Values{"partNumber": {strconv.Itoa(n)}, "uploadId": {s3id}}
		pu, err := m.core.Presign(ctx, http.MethodPut, m.bucket, m.prefix+u.Key, m.h.cfg.PresignExpiry, q)
		if err != nil {
			m.fail(w, r, "presign a part", err)
			return
		}
		size := partSize
		if n == nparts {
			size = req.Size - int64(nparts-1)*partSize
		}
		resp.Parts = append(resp.Parts, Part{Number: n, Size: size, URL: pu.String()})
	}
	resp.CompleteURL = m.h.cfg.BasePath + "multipart/" + u.ID + "/complete"
	m.h.log.InfoContext(ctx, "multipart upload started", "id", u.ID, "key", u.Key, "size", u.Size, "parts", nparts, "user", u.UserID)
	writeJSON(w, http.StatusCreated, resp)
}

// complete assembles the parts S3 holds (the server lists them itself,
// so browsers need not read ETag headers), checks the size and calls
// OnComplete.
func (m *multipart) complete(w http.ResponseWriter, r *http.Request, id string) {
	ctx := r.Context()
	st, ok := m.loadOwned(w, r, id)
	if !ok {
		return
	}
	object := m.prefix + st.Upload.Key
	var parts []minio.CompletePart
	var total int64
	marker := 0
	for {
		res, err := m.core.ListObjectParts(ctx, m.bucket, object, st.S3ID, marker, 1000)
		if err != nil {
			if minio.ToErrorResponse(err).Code == "NoSuchUpload" {
				m.deleteState(ctx, id)
				writeError(w, http.StatusNotFound, "not_found", "no such upload (expired or aborted)")
				return
			}
			m.fail(w, r, "list the uploaded parts", err)
			return
		}
		for _, p := range res.ObjectParts {
			parts = append(parts, minio.CompletePart{PartNumber: p.PartNumber, ETag: p.ETag})
			total += p.Size
		}
		if !res.IsTruncated {
			break
		}
		marker = res.NextPartNumberMarker
	}
	if len(parts) != st.Parts || total != st.Upload.Size {
		writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("upload incomplete: %d of %d parts, %d of %d bytes received; PUT the missing parts, then complete again",
			len(parts), st.Parts, total, st.Upload.Size))
		return
	}
	if _, err := m.core.CompleteMultipartUpload(ctx, m.bucket, object, st.S3ID, parts, minio.PutObjectOptions{}); err != nil {
		m.fail(w, r, "complete the multipart upload", err)
		return
	}
	m.deleteState(ctx, id)
	m.h.log.InfoContext(ctx, "upload stored", "id", id, "key", st.Upload.Key, "size", st.Upload.Size, "user", st.Upload.UserID)
	if m.h.cfg.OnComplete != nil {
		if err := m.h.cfg.OnComplete(ctx, st.Upload); err != nil {
			m.h.log.ErrorContext(ctx, "multipart upload stored but its completion hook failed", "id", id, "key", st.Upload.Key, "err", err)
			writeError(w, http.StatusInternalServerError, "internal", "the master is stored but could not be queued for processing")
			return
		}
	}
	writeJSON(w, http.StatusOK, st.Upload)
}

func (m *multipart) abort(w http.ResponseWriter, r *http.Request, id string) {
	st, ok := m.loadOwned(w, r, id)
	if !ok {
		return
	}
	err := m.core.AbortMultipartUpload(r.Context(), m.bucket, m.prefix+st.Upload.Key, st.S3ID)
	if err != nil && minio.ToErrorResponse(err).Code != "NoSuchUpload" {
		m.fail(w, r, "abort the multipart upload", err)
		return
	}
	m.deleteState(r.Context(), id)
	w.WriteHeader(http.StatusNoContent)
}

func (m *multipart) loadOwned(w http.ResponseWriter, r *http.Request, id string) (mpState, bool) {
	if !reUploadID.MatchString(id) {
		writeError(w, http.StatusNotFound, "not_found", "no such upload")
		return mpState{}, false
	}
	st, err := m.readState(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such upload")
		return mpState{}, false
	}
	if err != nil {
		m.fail(w, r, "read the upload's state", err)
		return mpState{}, false
	}
	if !mayAccess(r.Context(), st.Upload.UserID) {
		writeError(w, http.StatusNotFound, "not_found", "no such upload")
		return mpState{}, false
	}
	return st, true
}

func (m *multipart) saveState(ctx context.Context, st mpState) error {
	b, _ := json.Marshal(st)
	return m.h.cfg.Objects.Put(ctx, multipartStatePrefix+st.Upload.ID+".json", bytes.NewReader(b), int64(len(b)), "application/json")
}

func (m *multipart) deleteState(ctx context.Context, id string) {
	if err := m.h.cfg.Objects.Delete(context.WithoutCancel(ctx), multipartStatePrefix+id+".json"); err != nil {
		m.h.log.WarnContext(ctx, "multipart upload: delete state", "id", id, "err", err)
	}
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
