package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// S3 part sizes and limits.
const (
	// S3PartSizeDefault is the size of the parts S3.Put uploads a large
	// blob in. A Put holds at most one part in memory, so this is also
	// its memory bound; with S3MaxParts it caps one blob at 156 GiB.
	// (minio-go's own default for a stream of unknown size would buffer
	// parts of about 550 MiB.)
	S3PartSizeDefault = 16 << 20
	// S3MinPartSize is the smallest part S3 accepts (except the last).
	S3MinPartSize = 5 << 20
	// S3MaxPartSize is the largest part S3 accepts.
	S3MaxPartSize = 5 << 30
	// S3MaxParts is the most parts one multipart upload may have.
	S3MaxParts = 10000
)

// s3AbortTimeout bounds the abort of a failed upload, which runs even
// when the Put's context has ended.
const s3AbortTimeout = 30 * time.Second

// s3FirstBuffer is the buffer a Put starts with; it doubles up to the part
// size only as the blob turns out to be that large, so small blobs cost
// little memory.
const s3FirstBuffer = 64 << 10

// S3Config configures an S3 store. Its String method leaves the secret
// key out, so printing a config cannot leak it.
type S3Config struct {
	// Endpoint is host[:port] (HTTPS unless Insecure) or an
	// http(s)://host[:port] URL, e.g. s3.eu-west-1.amazonaws.com or
	// http://127.0.0.1:9000.
	Endpoint string
	// Insecure talks plain HTTP to a host[:port] endpoint.
	Insecure bool
	// Bucket holds the blobs; it must exist.
	Bucket string
	// Region is the bucket's region; "" lets the client ask the endpoint.
	Region string
	// Prefix, when set, is put before every key ("levqor" stores key
	// "a/b" as object "levqor/a/b"), so several installations or other
	// data can share a bucket. It must be a valid key; a trailing '/'
	// is implied.
	Prefix string
	// AccessKey and SecretKey sign the requests (AWS signature v4).
	AccessKey string
	SecretKey string
	// PartSize is the multipart part size in bytes, from S3MinPartSize to
	// S3MaxPartSize; 0 means S3PartSizeDefault.
	PartSize int64
	// LockMode, "governance" or "compliance", is the S3 Object Lock mode
	// Lock puts blobs under; the bucket must have Object Lock enabled.
	// "" refuses Lock.
	LockMode string
	// Transport replaces the HTTP transport (a private CA, tests); nil
	// uses minio-go's.
	Transport http.RoundTripper
}

// String describes the configuration without its secret key.
func (c S3Config) String() string {
	secret := ""
	if c.SecretKey != "" {
		secret = "[redacted]"
	}
	return fmt.Sprintf("{Endpoint:%s Insecure:%t Bucket:%s Region:%s Prefix:%s AccessKey:%s SecretKey:%s PartSize:%d}",
		c.Endpoint, c.Insecure, c.Bucket, c.Region, c.Prefix, c.AccessKey, secret, c.PartSize)
}

// GoString is String, so %#v cannot leak the secret key either.
func (c S3Config) GoString() string { return c.String() }

// S3 is a Store in a bucket of an S3-compatible object store (AWS S3,
// MinIO, Ceph, R2, …): the blob under key "a/b" is the object
// <prefix>/a/b.
//
// Put streams: it reads the blob one part (PartSize, 16 MiB by default)
// at a time, hashing the bytes as they pass, and uploads a blob that fits
// in one part with a single PUT and a larger one as a multipart upload.
// Both are atomic in S3: the object appears, whole, only when the PUT or
// the completion succeeds. A Put that fails (a reader error, a cancelled
// context, a refused part) aborts its multipart upload, with a context of
// its own so that a cancelled Put still cleans up, and so leaves no
// object and no stored parts. Only a process that dies mid-upload leaves
// its parts behind (invisible to Get and List, but billed): give the
// bucket a lifecycle rule that aborts incomplete multipart uploads after
// a day or so.
//
// Every part is sent with its SHA-256, which the endpoint checks, and the
// signature covers it. Objects in the bucket that are not valid keys
// (written by something else) are left out of List.
//
// Unlike Local, S3 lets a key be both a blob and the prefix of others
// ("a" and "a/b").
type S3 struct {
	core     minio.Core
	endpoint string
	bucket   string
	prefix   string
	partSize int64
	lockMode minio.RetentionMode
}

var _ Store = (*S3)(nil)

// NewS3 returns a store for cfg. It checks the configuration but does
// not contact the endpoint.
func NewS3(cfg S3Config) (*S3, error) {
	host, secure, err := ParseS3Endpoint(cfg.Endpoint, cfg.Insecure)
	if err != nil {
		return nil, fmt.Errorf("blob: S3 endpoint: %w", err)
	}
	if err := ValidateBucketName(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("blob: S3 bucket: %w", err)
	}
	prefix, err := s3Prefix(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("blob: S3 prefix: %w", err)
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("blob: S3 needs both an access key and a secret key")
	}
	partSize := cfg.PartSize
	if partSize == 0 {
		partSize = S3PartSizeDefault
	}
	if partSize < S3MinPartSize || partSize > S3MaxPartSize {
		return nil, fmt.Errorf("blob: S3 part size %d: want %d (5 MiB) to %d (5 GiB) bytes", partSize, S3MinPartSize, int64(S3MaxPartSize))
	}
	client, err := minio.New(host, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:    secure,
		Region:    cfg.Region,
		Transport: cfg.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("blob: S3 client: %w", err)
	}
	var mode minio.RetentionMode
	switch cfg.LockMode {
	case "":
	case "governance", "compliance":
		mode = minio.RetentionMode(strings.ToUpper(cfg.LockMode))
	default:
		return nil, fmt.Errorf("blob: S3 object lock mode %q: want governance or compliance", cfg.LockMode)
	}
	return &S3{core: minio.Core{Client: client}, endpoint: host, bucket: cfg.Bucket, prefix: prefix, partSize: partSize, lockMode: mode}, nil
}

// String names the store's location (never its credentials), for logs.
func (s *S3) String() string {
	return "s3://" + s.bucket + "/" + s.prefix + " at " + s.endpoint
}

// PartSize is the size of the parts Put uploads, and so the most memory
// one Put holds.
func (s *S3) PartSize() int64 { return s.partSize }

// ParseS3Endpoint reads an endpoint given as host[:port] (HTTPS, or plain
// HTTP when insecure) or as an http:// or https:// URL without a path,
// and returns the host[:port] and whether to use HTTPS. It refuses
// credentials in the endpoint without repeating them.
func ParseS3Endpoint(endpoint string, insecure bool) (host string, secure bool, err error) {
	endpoint = strings.TrimSpace(endpoint)
	if endpoint == "" {
		return "", false, errors.New("empty: want host[:port] or http(s)://host[:port]")
	}
	if strings.Contains(endpoint, "@") {
		return "", false, errors.New("must not contain credentials (user@host); give the keys separately")
	}
	raw := endpoint
	if !strings.Contains(endpoint, "://") {
		raw = "//" + endpoint
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", false, fmt.Errorf("%q: want host[:port] or http(s)://host[:port]", endpoint)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", false, fmt.Errorf("%q: no path or query (the bucket is configured separately)", endpoint)
	}
	switch u.Scheme {
	case "":
		return u.Host, !insecure, nil
	case "http":
		return u.Host, false, nil
	case "https":
		if insecure {
			return "", false, fmt.Errorf("%q is https:// but plain HTTP (insecure) is asked for: pick one", endpoint)
		}
		return u.Host, true, nil
	default:
		return "", false, fmt.Errorf("%q: scheme %q, want http or https", endpoint, u.Scheme)
	}
}

// ValidateBucketName checks a bucket name by S3's rules (lower-case
// letters, digits, '.' and '-', 3 to 63 characters; other S3-compatible
// stores accept upper case and '_' too, so those pass).
func ValidateBucketName(bucket string) error {
	if bucket == "" {
		return errors.New("empty")
	}
	if err := s3utils.CheckValidBucketName(bucket); err != nil {
		return fmt.Errorf("%q: %w", bucket, err)
	}
	return nil
}

// s3Prefix normalises a configured key prefix to "" or "<valid key>/".
func s3Prefix(p string) (string, error) {
	p = strings.TrimSuffix(strings.TrimSpace(p), "/")
	if p == "" {
		return "", nil
	}
	if err := ValidateKey(p); err != nil {
		return "", err
	}
	return p + "/", nil
}

// object maps a key to its object name.
func (s *S3) object(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

// Put implements Store. See S3 for how it streams and stays atomic.
func (s *S3) Put(ctx context.Context, key string, r io.Reader) (size int64, sum string, err error) {
	name, err := s.object(key)
	if err != nil {
		return 0, "", err
	}
	if err := ctx.Err(); err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: %w", key, err)
	}
	h := sha256.New()
	src := io.TeeReader(ctxReader{ctx: ctx, r: r}, h)
	buf, eof, err := fillPart(src, make([]byte, 0, min(s3FirstBuffer, s.partSize)), s.partSize)
	if err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: %w", key, err)
	}
	if !eof {
		return s.putMultipart(ctx, key, name, src, h, buf)
	}
	// The whole blob is in buf, so the stream's hash is also the payload
	// hash the request is signed with.
	sum = hex.EncodeToString(h.Sum(nil))
	_, err = s.core.PutObject(ctx, s.bucket, name, bytes.NewReader(buf), int64(len(buf)), "", sum,
		minio.PutObjectOptions{DisableContentSha256: true})
	if err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: %w", key, s.explain(err))
	}
	return int64(len(buf)), sum, nil
}

// putMultipart uploads a blob larger than one part: first (full) is
// already read, the rest comes from src. On any failure it aborts the
// upload.
func (s *S3) putMultipart(ctx context.Context, key, name string, src io.Reader, h hash.Hash, first []byte) (size int64, sum string, err error) {
	id, err := s.core.NewMultipartUpload(ctx, s.bucket, name, minio.PutObjectOptions{})
	if err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: starting the upload: %w", key, s.explain(err))
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.abort(ctx, key, name, id))
		}
	}()
	var parts []minio.CompletePart
	buf, eof := first, false
	for {
		if len(buf) > 0 {
			if len(parts) == S3MaxParts {
				return 0, "", fmt.Errorf("blob: putting %s: larger than %d parts of %d bytes (raise the part size)", key, S3MaxParts, s.partSize)
			}
			part, err := s.core.PutObjectPart(ctx, s.bucket, name, id, len(parts)+1, bytes.NewReader(buf), int64(len(buf)),
				minio.PutObjectPartOptions{Sha256Hex: sha256Hex(buf), DisableContentSha256: true})
			if err != nil {
				return 0, "", fmt.Errorf("blob: putting %s: part %d: %w", key, len(parts)+1, s.explain(err))
			}
			parts = append(parts, minio.CompletePart{PartNumber: part.PartNumber, ETag: part.ETag})
			size += int64(len(buf))
		}
		if eof {
			break
		}
		if buf, eof, err = fillPart(src, buf, s.partSize); err != nil {
			return 0, "", fmt.Errorf("blob: putting %s: %w", key, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: %w", key, err)
	}
	if _, err := s.core.CompleteMultipartUpload(ctx, s.bucket, name, id, parts, minio.PutObjectOptions{}); err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: completing the upload: %w", key, s.explain(err))
	}
	return size, hex.EncodeToString(h.Sum(nil)), nil
}

// abort aborts a multipart upload, even when ctx has ended, so that its
// parts do not stay stored. Its error tells the operator what is left.
func (s *S3) abort(ctx context.Context, key, name, id string) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s3AbortTimeout)
	defer cancel()
	err := s.core.AbortMultipartUpload(actx, s.bucket, name, id)
	if err == nil || s3Code(err) == "NoSuchUpload" {
		return nil
	}
	return fmt.Errorf("blob: aborting the upload of %s failed, its parts stay until the bucket's lifecycle rule removes them: %w", key, err)
}

// fillPart reads from r into buf until it holds limit bytes or r ends
// (eof). buf's capacity doubles as needed, never beyond limit, so a Put
// holds at most one part.
func fillPart(r io.Reader, buf []byte, limit int64) (_ []byte, eof bool, _ error) {
	buf = buf[:0]
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(max(2*int64(cap(buf)), s3FirstBuffer), limit))
			copy(grown, buf)
			buf = grown
		}
		end := min(int64(cap(buf)), limit)
		n, err := r.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, true, nil
		}
		if err != nil {
			return buf, false, err
		}
	}
	return buf, false, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Get implements Store. The object is opened at once, so a missing blob
// fails here and not on the first read.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	name, err := s.object(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("blob: getting %s: %w", key, err)
	}
	rc, _, _, err := s.core.GetObject(ctx, s.bucket, name, minio.GetObjectOptions{})
	if isS3NotFound(err) {
		return nil, fmt.Errorf("blob %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blob: getting %s: %w", key, s.explain(err))
	}
	return rc, nil
}

// GetRange implements Store with a ranged GET.
func (s *S3) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("blob: getting %s: negative range %d+%d", key, off, n)
	}
	if n == 0 {
		if _, err := s.Stat(ctx, key); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	name, err := s.object(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("blob: getting %s: %w", key, err)
	}
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(off, off+n-1); err != nil {
		return nil, fmt.Errorf("blob: getting %s: %w", key, err)
	}
	rc, _, _, err := s.core.GetObject(ctx, s.bucket, name, opts)
	if isS3NotFound(err) {
		return nil, fmt.Errorf("blob %s: %w", key, ErrNotFound)
	}
	if err != nil {
		var resp minio.ErrorResponse
		if errors.As(err, &resp) && resp.Code == "InvalidRange" {
			return io.NopCloser(strings.NewReader("")), nil // past the end: nothing there
		}
		return nil, fmt.Errorf("blob: getting %s: %w", key, s.explain(err))
	}
	return rc, nil
}

// Delete implements Store. S3 deletes are idempotent already; a store
// that answers NoSuchKey is taken as having nothing to delete.
func (s *S3) Delete(ctx context.Context, key string) error {
	name, err := s.object(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: deleting %s: %w", key, err)
	}
	opts := minio.RemoveObjectOptions{}
	if s.lockMode != "" {
		// A bucket with Object Lock is versioned: a delete without a
		// version only hides the object behind a delete marker, and the
		// data stays (and is billed) for good. The version is deleted
		// itself, which the endpoint refuses while it is locked.
		oi, err := s.core.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
		if isS3NotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("blob: deleting %s: %w", key, s.explain(err))
		}
		opts.VersionID = oi.VersionID
	}
	if err := s.core.RemoveObject(ctx, s.bucket, name, opts); err != nil && !isS3NotFound(err) {
		if s.lockMode != "" {
			if until, lerr := s.LockedUntil(ctx, key); lerr == nil && !until.IsZero() {
				return fmt.Errorf("blob %s until %s: %w", key, until.Format(time.RFC3339), ErrLocked)
			}
		}
		return fmt.Errorf("blob: deleting %s: %w", key, s.explain(err))
	}
	return nil
}

// Lock implements Store with S3 Object Lock retention in the configured
// mode (LockMode); the endpoint itself then refuses to delete or
// overwrite the object before until.
func (s *S3) Lock(ctx context.Context, key string, until time.Time) error {
	if s.lockMode == "" {
		return fmt.Errorf("blob: locking %s: no object lock mode is configured (LEVQOR_BLOB_S3_OBJECT_LOCK)", key)
	}
	cur, err := s.LockedUntil(ctx, key)
	if err != nil {
		return err
	}
	until = until.UTC().Truncate(time.Second)
	if !until.After(cur) {
		return nil
	}
	name, err := s.object(key)
	if err != nil {
		return err
	}
	mode := s.lockMode
	if err := s.core.PutObjectRetention(ctx, s.bucket, name, minio.PutObjectRetentionOptions{Mode: &mode, RetainUntilDate: &until}); err != nil {
		if isS3NotFound(err) {
			return fmt.Errorf("blob %s: %w", key, ErrNotFound)
		}
		return fmt.Errorf("blob: locking %s: %w", key, s.explain(err))
	}
	return nil
}

// LockedUntil implements Store: the object's Object Lock retention date
// (x-amz-object-lock-retain-until-date on HEAD), when it is to come.
func (s *S3) LockedUntil(ctx context.Context, key string) (time.Time, error) {
	name, err := s.object(key)
	if err != nil {
		return time.Time{}, err
	}
	oi, err := s.core.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if isS3NotFound(err) {
		return time.Time{}, fmt.Errorf("blob %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("blob: reading the lock of %s: %w", key, s.explain(err))
	}
	v := oi.Metadata.Get("X-Amz-Object-Lock-Retain-Until-Date")
	if v == "" {
		return time.Time{}, nil
	}
	until, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("blob: reading the lock of %s: %q is not a date", key, v)
	}
	if !time.Now().Before(until) {
		return time.Time{}, nil
	}
	return until.UTC(), nil
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	name, err := s.object(key)
	if err != nil {
		return Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("blob: stat %s: %w", key, err)
	}
	oi, err := s.core.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if isS3NotFound(err) {
		// A HEAD answer has no body, so a missing bucket looks like a
		// missing object: ask, rather than report every blob gone.
		exists, berr := s.core.BucketExists(ctx, s.bucket)
		if berr != nil {
			return Info{}, fmt.Errorf("blob: stat %s: %w", key, berr)
		}
		if !exists {
			return Info{}, fmt.Errorf("blob: stat %s: bucket %q does not exist", key, s.bucket)
		}
		return Info{}, fmt.Errorf("blob %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return Info{}, fmt.Errorf("blob: stat %s: %w", key, s.explain(err))
	}
	return Info{Key: key, Size: oi.Size, ModTime: oi.LastModified.UTC()}, nil
}

// List implements Store. Objects under the store's prefix whose names
// are not valid keys (a folder marker, another tool's files) are skipped.
func (s *S3) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("blob: listing %q: %w", prefix, err)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the lister when we return early
	out := []Info{}
	for oi := range s.core.ListObjectsIter(lctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, fmt.Errorf("blob: listing %q: %w", prefix, s.explain(oi.Err))
		}
		key, ok := strings.CutPrefix(oi.Key, s.prefix)
		if !ok || ValidateKey(key) != nil {
			continue
		}
		out = append(out, Info{Key: key, Size: oi.Size, ModTime: oi.LastModified.UTC()})
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("blob: listing %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// explain names the bucket when the endpoint says it does not exist: the
// endpoint's own message does not, and the cause is the configuration.
func (s *S3) explain(err error) error {
	if s3Code(err) == "NoSuchBucket" {
		return fmt.Errorf("bucket %q: %w", s.bucket, err)
	}
	return err
}

// s3Code is the S3 error code of err ("NoSuchKey", …), or "".
func s3Code(err error) string {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.Code
	}
	return ""
}

// isS3NotFound tells a missing object apart from a missing bucket, which
// is a configuration error and must not read as "no blob".
func isS3NotFound(err error) bool {
	if err == nil {
		return false
	}
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		return false
	}
	return er.Code == "NoSuchKey" || (er.StatusCode == http.StatusNotFound && er.Code != "NoSuchBucket")
}

// RemoveAbandoned implements Janitor: it aborts the multipart uploads
// under the store's prefix that were initiated before before and never
// completed (a worker died mid-upload), so their parts stop being stored
// and billed.
func (s *S3) RemoveAbandoned(ctx context.Context, before time.Time) (int, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	for u := range s.core.ListIncompleteUploads(lctx, s.bucket, s.prefix, true) {
		if u.Err != nil {
			return n, fmt.Errorf("blob: listing abandoned uploads: %w", s.explain(u.Err))
		}
		if !u.Initiated.Before(before) {
			continue
		}
		if err := s.core.AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID); err != nil && s3Code(err) != "NoSuchUpload" {
			return n, fmt.Errorf("blob: aborting the abandoned upload of %s: %w", u.Key, s.explain(err))
		}
		n++
	}
	return n, nil
}
