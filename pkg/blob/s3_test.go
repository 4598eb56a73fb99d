package blob_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/blob/blobtest"
)

const fakeBucket = "levqor-test"

// fakeS3 is an in-process S3-compatible server (gofakes3 over httptest)
// that counts what reaches it, so tests can check how a Put streams.
type fakeS3 struct {
	url string
	// raw reads the bucket directly, around any store's prefix.
	raw minio.Core
	// received counts the request body bytes the server has read from
	// object and part uploads.
	received atomic.Int64
	// parts counts part uploads, aborts aborted multipart uploads.
	parts  atomic.Int64
	aborts atomic.Int64
	// onPart, when set, runs as part n's request arrives, before the
	// server reads it.
	onPart atomic.Pointer[func(n int64, r *http.Request)]
}

func newFakeS3(t *testing.T) *fakeS3 {
	t.Helper()
	backend := s3mem.New()
	require.NoError(t, backend.CreateBucket(fakeBucket))
	s3 := gofakes3.New(backend).Server()
	f := &fakeS3{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.Method == http.MethodPut {
			if q.Has("partNumber") {
				n := f.parts.Add(1)
				if hook := f.onPart.Load(); hook != nil {
					(*hook)(n, r)
				}
			}
			r.Body = countingBody{ReadCloser: r.Body, n: &f.received}
		}
		if r.Method == http.MethodDelete && q.Has("uploadId") {
			f.aborts.Add(1)
		}
		s3.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	client, err := minio.New(strings.TrimPrefix(srv.URL, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4("test-access", "test-secret", ""),
	})
	require.NoError(t, err)
	f.raw = minio.Core{Client: client}
	return f
}

// store returns a store on the fake server; edit adjusts its config.
func (f *fakeS3) store(t *testing.T, edit func(*blob.S3Config)) *blob.S3 {
	t.Helper()
	cfg := blob.S3Config{Endpoint: f.url, Bucket: fakeBucket, AccessKey: "test-access", SecretKey: "test-secret"}
	if edit != nil {
		edit(&cfg)
	}
	s, err := blob.NewS3(cfg)
	require.NoError(t, err)
	return s
}

// incompleteUploads lists the multipart uploads left in the bucket.
func (f *fakeS3) incompleteUploads(t *testing.T) []string {
	t.Helper()
	res, err := f.raw.ListMultipartUploads(context.Background(), fakeBucket, "", "", "", "", 1000)
	require.NoError(t, err)
	var keys []string
	for _, u := range res.Uploads {
		keys = append(keys, u.Key)
	}
	return keys
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func TestS3Conformance(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	t.Run("NoPrefix", func(t *testing.T) {
		t.Parallel()
		blobtest.Run(t, f.store(t, nil))
	})
	t.Run("Prefix", func(t *testing.T) {
		t.Parallel()
		blobtest.Run(t, f.store(t, func(c *blob.S3Config) { c.Prefix = "tenant-a/levqor/" }))
	})
}

// TestS3RealEndpoint runs the conformance suite against a real
// S3-compatible endpoint (AWS S3, MinIO, …) under a random prefix it
// removes afterwards.
func TestS3RealEndpoint(t *testing.T) {
	endpoint := os.Getenv("LEVQOR_TEST_S3_ENDPOINT")
	if endpoint == "" {
		t.Skip("LEVQOR_TEST_S3_ENDPOINT is not set: set it with LEVQOR_TEST_S3_BUCKET, LEVQOR_TEST_S3_ACCESS_KEY and " +
			"LEVQOR_TEST_S3_SECRET_KEY (optionally LEVQOR_TEST_S3_REGION, LEVQOR_TEST_S3_INSECURE=true) to run the S3 store against a real endpoint")
	}
	t.Parallel()
	insecure, _ := strconv.ParseBool(os.Getenv("LEVQOR_TEST_S3_INSECURE"))
	prefix := "levqor-test-" + hex.EncodeToString(random(t, 6))
	s, err := blob.NewS3(blob.S3Config{
		Endpoint:  endpoint,
		Insecure:  insecure,
		Bucket:    os.Getenv("LEVQOR_TEST_S3_BUCKET"),
		Region:    os.Getenv("LEVQOR_TEST_S3_REGION"),
		Prefix:    prefix,
		AccessKey: os.Getenv("LEVQOR_TEST_S3_ACCESS_KEY"),
		SecretKey: os.Getenv("LEVQOR_TEST_S3_SECRET_KEY"),
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, err := s.List(ctx, "")
		require.NoError(t, err)
		for _, i := range list {
			require.NoError(t, s.Delete(ctx, i.Key))
		}
	})
	blobtest.Run(t, s)
	t.Run("MultipartRoundTrip", func(t *testing.T) {
		src := newStream(2*blob.S3PartSizeDefault + 1<<20)
		size, sum, err := s.Put(t.Context(), "multipart/blob", src)
		require.NoError(t, err)
		require.Equal(t, src.size, size)
		require.Equal(t, src.sum(), sum)
		require.Equal(t, sum, getSum(t, s, "multipart/blob"))
	})
}

// TestS3LargePutStreamsInBoundedMemory: a 40 MiB stream of unknown
// length goes up in 16 MiB parts, and the store never holds more than
// one part: at every read, what it took from the source and the server
// has not yet received stays within a part. It reads back byte-exact.
func TestS3LargePutStreamsInBoundedMemory(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	s := f.store(t, nil)
	require.EqualValues(t, blob.S3PartSizeDefault, s.PartSize())
	src := newStream(40 << 20)
	src.onRead = func(produced int64) {
		src.maxAhead = max(src.maxAhead, produced-f.received.Load())
	}
	size, sum, err := s.Put(t.Context(), "acc_1/src_1/big.tar.zst", src)
	require.NoError(t, err)
	require.EqualValues(t, 40<<20, size)
	require.Equal(t, src.sum(), sum)
	require.EqualValues(t, 3, f.parts.Load(), "16 + 16 + 8 MiB")
	require.LessOrEqual(t, src.maxAhead, s.PartSize(), "the store buffered more than one part")
	require.GreaterOrEqual(t, src.maxAhead, s.PartSize()/2, "the measure sees the part being filled")

	require.Equal(t, sum, getSum(t, s, "acc_1/src_1/big.tar.zst"))
	info, err := s.Stat(t.Context(), "acc_1/src_1/big.tar.zst")
	require.NoError(t, err)
	require.EqualValues(t, 40<<20, info.Size)
	require.Empty(t, f.incompleteUploads(t))
}

// TestS3PartSizedBlobs: blobs of exactly one part, one byte less and one
// byte more, the edges between a single PUT and a multipart upload.
func TestS3PartSizedBlobs(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	s := f.store(t, func(c *blob.S3Config) { c.PartSize = blob.S3MinPartSize })
	for _, n := range []int64{blob.S3MinPartSize - 1, blob.S3MinPartSize, blob.S3MinPartSize + 1, 2 * blob.S3MinPartSize} {
		key := fmt.Sprintf("edge/%d", n)
		src := newStream(n)
		size, sum, err := s.Put(t.Context(), key, src)
		require.NoError(t, err, n)
		require.Equal(t, n, size)
		require.Equal(t, src.sum(), sum)
		require.Equal(t, sum, getSum(t, s, key), n)
	}
	require.Empty(t, f.incompleteUploads(t))
}

// TestS3FailedMultipartPutLeavesNothing: a reader that fails after two
// parts were uploaded leaves no object, no stored parts (the upload is
// aborted), and an older blob under the key untouched.
func TestS3FailedMultipartPutLeavesNothing(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	s := f.store(t, func(c *blob.S3Config) { c.PartSize = blob.S3MinPartSize })
	ctx := t.Context()
	boom := errors.New("source vanished")

	_, _, err := s.Put(ctx, "acc_1/src_1/new", io.MultiReader(newStream(12<<20), errReader{boom}))
	require.ErrorIs(t, err, boom)
	require.EqualValues(t, 2, f.parts.Load(), "two full parts went up before the failure")
	require.EqualValues(t, 1, f.aborts.Load())
	_, err = s.Stat(ctx, "acc_1/src_1/new")
	require.ErrorIs(t, err, blob.ErrNotFound)
	require.Empty(t, f.incompleteUploads(t), "the parts are gone")

	_, goodSum, err := s.Put(ctx, "acc_1/src_1/old", strings.NewReader("the good copy"))
	require.NoError(t, err)
	_, _, err = s.Put(ctx, "acc_1/src_1/old", io.MultiReader(newStream(7<<20), errReader{boom}))
	require.ErrorIs(t, err, boom)
	require.Equal(t, goodSum, getSum(t, s, "acc_1/src_1/old"), "a failed replace keeps the old blob")
	require.Empty(t, f.incompleteUploads(t))
}

// TestS3CancelledPutAbortsItsUpload: a Put cancelled between parts, or
// while a part is on the wire, fails with context.Canceled and still
// aborts its upload (with a context of its own).
func TestS3CancelledPutAbortsItsUpload(t *testing.T) {
	t.Parallel()
	t.Run("BetweenParts", func(t *testing.T) {
		t.Parallel()
		f := newFakeS3(t)
		s := f.store(t, func(c *blob.S3Config) { c.PartSize = blob.S3MinPartSize })
		ctx, cancel := context.WithCancel(t.Context())
		src := newStream(30 << 20)
		src.onRead = func(produced int64) {
			if produced > 11<<20 {
				cancel()
			}
		}
		_, _, err := s.Put(ctx, "acc_1/src_1/cancelled", src)
		require.ErrorIs(t, err, context.Canceled)
		require.EqualValues(t, 2, f.parts.Load())
		require.EqualValues(t, 1, f.aborts.Load())
		_, err = s.Stat(t.Context(), "acc_1/src_1/cancelled")
		require.ErrorIs(t, err, blob.ErrNotFound)
		require.Empty(t, f.incompleteUploads(t))
	})
	t.Run("DuringAPart", func(t *testing.T) {
		t.Parallel()
		f := newFakeS3(t)
		s := f.store(t, func(c *blob.S3Config) { c.PartSize = blob.S3MinPartSize })
		ctx, cancel := context.WithCancel(t.Context())
		putDone := make(chan struct{})
		hook := func(n int64, _ *http.Request) {
			if n == 2 {
				cancel()
				// Part 2 stays unanswered until Put has given up on it
				// and aborted the upload.
				select {
				case <-putDone:
				case <-t.Context().Done():
				}
			}
		}
		f.onPart.Store(&hook)
		_, _, err := s.Put(ctx, "acc_1/src_1/cancelled", newStream(30<<20))
		close(putDone)
		require.ErrorIs(t, err, context.Canceled)
		require.EqualValues(t, 1, f.aborts.Load())
		_, err = s.Stat(t.Context(), "acc_1/src_1/cancelled")
		require.ErrorIs(t, err, blob.ErrNotFound)
		require.Empty(t, f.incompleteUploads(t))
	})
}

// TestS3Prefix: a store with a prefix keeps its blobs under it, lists
// only them, and skips objects there that no store could have written.
func TestS3Prefix(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	ctx := t.Context()
	s := f.store(t, func(c *blob.S3Config) { c.Prefix = "levqor" })
	_, _, err := s.Put(ctx, "acc_1/s1", strings.NewReader("one"))
	require.NoError(t, err)
	for _, name := range []string{"other-app/x", "levqor/", "levqor/acc_1/.hidden", "levqor/acc_1/with space"} {
		_, err := f.raw.PutObject(ctx, fakeBucket, name, strings.NewReader("foreign"), 7, "", "", minio.PutObjectOptions{})
		require.NoError(t, err)
	}
	_, err = f.raw.StatObject(ctx, fakeBucket, "levqor/acc_1/s1", minio.StatObjectOptions{})
	require.NoError(t, err, "stored under the prefix")

	list, err := s.List(ctx, "")
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "acc_1/s1", list[0].Key)
	require.EqualValues(t, 3, list[0].Size)

	bare := f.store(t, nil)
	_, err = bare.Stat(ctx, "acc_1/s1")
	require.ErrorIs(t, err, blob.ErrNotFound, "a store without the prefix does not see it")
	_, err = bare.Stat(ctx, "levqor/acc_1/s1")
	require.NoError(t, err)
}

// TestS3MissingBucketIsNotMissingBlobs: a misconfigured bucket is an
// error, never "no such blob", which could read as data loss.
func TestS3MissingBucketIsNotMissingBlobs(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	s := f.store(t, func(c *blob.S3Config) { c.Bucket = "no-such-bucket" })
	ctx := t.Context()
	_, err := s.Stat(ctx, "acc_1/s1")
	require.Error(t, err)
	require.NotErrorIs(t, err, blob.ErrNotFound)
	require.ErrorContains(t, err, "no-such-bucket")
	_, err = s.Get(ctx, "acc_1/s1")
	require.Error(t, err)
	require.NotErrorIs(t, err, blob.ErrNotFound)
	_, _, err = s.Put(ctx, "acc_1/s1", strings.NewReader("x"))
	require.Error(t, err)
	_, err = s.List(ctx, "")
	require.Error(t, err)
}

// TestS3ClosedContext: nothing is sent once the context has ended.
func TestS3ClosedContext(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	s := f.store(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _, err := s.Put(ctx, "k", strings.NewReader("x"))
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Stat(ctx, "k")
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, s.Delete(ctx, "k"), context.Canceled)
	_, err = s.List(ctx, "")
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, f.received.Load())
}

func TestNewS3RefusesBadConfig(t *testing.T) {
	t.Parallel()
	good := blob.S3Config{Endpoint: "s3.eu-west-1.amazonaws.com", Bucket: "levqor-blobs", AccessKey: "AKIA", SecretKey: "very-secret-value"}
	_, err := blob.NewS3(good)
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		edit func(*blob.S3Config)
		want string
	}{
		"NoEndpoint":     {func(c *blob.S3Config) { c.Endpoint = "" }, "endpoint"},
		"EndpointPath":   {func(c *blob.S3Config) { c.Endpoint = "https://s3.example.com/bucket" }, "no path"},
		"EndpointScheme": {func(c *blob.S3Config) { c.Endpoint = "ftp://s3.example.com" }, "scheme"},
		"HTTPSInsecure":  {func(c *blob.S3Config) { c.Endpoint = "https://s3.example.com"; c.Insecure = true }, "pick one"},
		"NoBucket":       {func(c *blob.S3Config) { c.Bucket = "" }, "bucket"},
		"BadBucket":      {func(c *blob.S3Config) { c.Bucket = "a" }, "bucket"},
		"BadPrefix":      {func(c *blob.S3Config) { c.Prefix = "../up" }, "prefix"},
		"NoSecret":       {func(c *blob.S3Config) { c.SecretKey = "" }, "secret key"},
		"SmallParts":     {func(c *blob.S3Config) { c.PartSize = 1 << 20 }, "part size"},
	} {
		cfg := good
		tc.edit(&cfg)
		_, err := blob.NewS3(cfg)
		require.ErrorContains(t, err, tc.want, name)
	}

	_, err = blob.NewS3(blob.S3Config{Endpoint: "https://AKIA:very-secret-value@s3.example.com", Bucket: "b-1", AccessKey: "a", SecretKey: "b"})
	require.ErrorContains(t, err, "credentials")
	require.NotContains(t, err.Error(), "very-secret-value")

	require.NotContains(t, fmt.Sprintf("%v %+v %#v %s", good, good, good, good), "very-secret-value")
	s, err := blob.NewS3(good)
	require.NoError(t, err)
	require.NotContains(t, fmt.Sprint(s), "very-secret-value")
}

func TestParseS3Endpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in       string
		insecure bool
		host     string
		secure   bool
	}{
		{"s3.amazonaws.com", false, "s3.amazonaws.com", true},
		{"127.0.0.1:9000", true, "127.0.0.1:9000", false},
		{"http://minio:9000", false, "minio:9000", false},
		{"https://r2.example.com/", false, "r2.example.com", true},
		{"[::1]:9000", true, "[::1]:9000", false},
	} {
		host, secure, err := blob.ParseS3Endpoint(tc.in, tc.insecure)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.host, host, tc.in)
		require.Equal(t, tc.secure, secure, tc.in)
	}
	for _, bad := range []string{"", "http://", "minio:9000/bucket", "https://h?x=1", "user:pw@host", "s3://bucket"} {
		_, _, err := blob.ParseS3Endpoint(bad, false)
		require.Error(t, err, bad)
	}
}

// stream yields size pseudo-random bytes without holding them, hashing
// them as it goes; onRead sees the running total after each read.
type stream struct {
	rng      *mrand.ChaCha8
	size     int64
	produced int64
	h        hash.Hash
	onRead   func(produced int64)
	maxAhead int64
}

func newStream(size int64) *stream {
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	return &stream{rng: mrand.NewChaCha8(seed), size: size, h: sha256.New()}
}

func (s *stream) Read(p []byte) (int, error) {
	if s.produced >= s.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), s.size-s.produced)]
	n, _ := s.rng.Read(p)
	s.h.Write(p[:n])
	s.produced += int64(n)
	if s.onRead != nil {
		s.onRead(s.produced)
	}
	return n, nil
}

// sum is the SHA-256 of everything read so far.
func (s *stream) sum() string { return hex.EncodeToString(s.h.Sum(nil)) }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// getSum streams a blob back and returns its SHA-256.
func getSum(t *testing.T, s blob.Store, key string) string {
	t.Helper()
	rc, err := s.Get(t.Context(), key)
	require.NoError(t, err)
	defer rc.Close()
	h := sha256.New()
	_, err = io.Copy(h, rc)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

// TestS3RemoveAbandonedAbortsOldUploads: an upload a dead worker began
// and never finished is aborted once it is older than the cutoff; a
// recent one (a worker may still be sending it) is left alone.
func TestS3RemoveAbandonedAbortsOldUploads(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	s := f.store(t, nil)
	ctx := t.Context()
	_, err := f.raw.NewMultipartUpload(ctx, fakeBucket, "acc_1/src_1/died-mid-upload", minio.PutObjectOptions{})
	require.NoError(t, err)
	require.Len(t, f.incompleteUploads(t), 1)

	n, err := s.RemoveAbandoned(ctx, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.Zero(t, n, "begun after the cutoff: maybe still running")
	require.Len(t, f.incompleteUploads(t), 1)

	n, err = s.RemoveAbandoned(ctx, time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Empty(t, f.incompleteUploads(t))
}
