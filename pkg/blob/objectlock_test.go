package blob_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/blob/blobtest"
)

// versityGW finds the Versity S3 gateway (github.com/versity/versitygw),
// an S3 server that implements Object Lock: LEVQOR_VERSITYGW_BIN, else
// versitygw on PATH or in $(go env GOPATH)/bin. scripts/test installs it.
func versityGW(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LEVQOR_VERSITYGW_BIN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(string(out[:len(out)-1]), "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "versitygw not found: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 (or set LEVQOR_VERSITYGW_BIN)"
	if os.Getenv("LEVQOR_TEST_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// TestS3ObjectLock runs the lock conformance suite against a real S3
// server with Object Lock: versitygw's POSIX gateway, started on a free
// port over a temporary directory, with a bucket made with Object Lock
// enabled. The server itself refuses to delete a locked object.
func TestS3ObjectLock(t *testing.T) {
	t.Parallel()
	bin := versityGW(t)
	for _, server := range []struct {
		name string
		args []string
	}{
		{"Unversioned", nil},
		// As AWS S3 is: a bucket with Object Lock is versioned, and a
		// delete must name the version to remove data at all.
		{"Versioned", []string{"--versioning-dir", t.TempDir()}},
	} {
		t.Run(server.name, func(t *testing.T) {
			t.Parallel()
			addr := startVersityGW(t, bin, server.args...)
			for _, mode := range []string{"governance", "compliance"} {
				t.Run(mode, func(t *testing.T) {
					s, err := blob.NewS3(blob.S3Config{Endpoint: "http://" + addr, Bucket: "locked", Region: "us-east-1", Prefix: mode,
						AccessKey: gwAccess, SecretKey: gwSecret, LockMode: mode})
					require.NoError(t, err)
					blobtest.RunLocks(t, s)
				})
			}
			t.Run("NoModeRefusesLock", func(t *testing.T) {
				s, err := blob.NewS3(blob.S3Config{Endpoint: "http://" + addr, Bucket: "locked", Region: "us-east-1", AccessKey: gwAccess, SecretKey: gwSecret})
				require.NoError(t, err)
				_, _, err = s.Put(t.Context(), "plain", strings.NewReader("plain"))
				require.NoError(t, err)
				require.ErrorContains(t, s.Lock(t.Context(), "plain", time.Now().Add(time.Hour)), "LEVQOR_BLOB_S3_OBJECT_LOCK")
			})
		})
	}
}

const gwAccess, gwSecret = "levqor-test", "levqor-test-secret"

// startVersityGW starts versitygw's POSIX gateway on a free port over a
// temporary directory, with args before the directory, and makes the
// bucket "locked" with Object Lock enabled; it returns the address.
func startVersityGW(t *testing.T, bin string, args ...string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	ctx, cancel := context.WithCancel(context.Background())
	argv := append([]string{"--access", gwAccess, "--secret", gwSecret, "--port", addr, "posix"}, args...)
	cmd := exec.CommandContext(ctx, bin, append(argv, t.TempDir())...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 20*time.Second, 50*time.Millisecond, "versitygw did not listen: %s", out)
	client, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(gwAccess, gwSecret, ""), Region: "us-east-1"})
	require.NoError(t, err)
	require.NoError(t, client.MakeBucket(t.Context(), "locked", minio.MakeBucketOptions{ObjectLocking: true, Region: "us-east-1"}), "%s", out)
	return addr
}

func TestLocalLocks(t *testing.T) {
	t.Parallel()
	s, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	blobtest.RunLocks(t, s)
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
