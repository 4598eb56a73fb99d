package archive

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/telemetry/heapwatch"
)

// writeLargeFile creates a file of mb MiB alternating 1 MiB of
// pseudo-random bytes (incompressible) with 1 MiB holes (sparse zeros).
func writeLargeFile(tb testing.TB, dir string, mb int) string {
	tb.Helper()
	p := filepath.Join(dir, "large.bin")
	f, err := os.Create(p)
	require.NoError(tb, err)
	r := rand.NewChaCha8([32]byte{1, 2, 3})
	block := make([]byte, 1<<20)
	for i := 0; i < mb; i += 2 {
		_, _ = r.Read(block)
		_, err := f.WriteAt(block, int64(i)<<20)
		require.NoError(tb, err)
	}
	require.NoError(tb, f.Truncate(int64(mb)<<20))
	require.NoError(tb, f.Close())
	return p
}

// The heap stays flat while a file many times larger than every buffer
// is backed up, verified and restored. Not parallel, so that other tests'
// allocations do not blur the measurement.
func TestMemoryStaysFlat(t *testing.T) {
	mb := 96
	if testing.Short() {
		mb = 32
	}
	src := t.TempDir()
	writeLargeFile(t, src, mb)
	archivePath := filepath.Join(t.TempDir(), "archive")
	const limit = 32 << 20

	out, err := os.Create(archivePath)
	require.NoError(t, err)
	h := heapwatch.Start()
	m, err := WriteDirectory(context.Background(), out, src, nil)
	growth := h.Done().Growth
	require.NoError(t, err)
	require.NoError(t, out.Close())
	require.Equal(t, int64(mb)<<20, m.SourceBytes)
	t.Logf("write: heap grew by %.1f MiB for a %d MiB file", float64(growth)/(1<<20), mb)
	require.Less(t, growth, uint64(limit), "WriteDirectory heap growth")

	in, err := os.Open(archivePath)
	require.NoError(t, err)
	defer in.Close()
	h = heapwatch.Start()
	_, _, err = Verify(context.Background(), in)
	growth = h.Done().Growth
	require.NoError(t, err)
	t.Logf("verify: heap grew by %.1f MiB", float64(growth)/(1<<20))
	require.Less(t, growth, uint64(limit), "Verify heap growth")

	_, err = in.Seek(0, io.SeekStart)
	require.NoError(t, err)
	h = heapwatch.Start()
	_, err = RestoreDirectory(context.Background(), in, filepath.Join(t.TempDir(), "restored"), RestoreOptions{})
	growth = h.Done().Growth
	require.NoError(t, err)
	t.Logf("restore: heap grew by %.1f MiB", float64(growth)/(1<<20))
	require.Less(t, growth, uint64(limit), "RestoreDirectory heap growth")
}

// BenchmarkWriteDirectoryLargeFile backs up, verifies and restores one
// file far larger than the engine's buffers and reports the peak Go heap
// alongside the throughput. LEVQOR_BENCH_FILE_MB sets the file's size in
// MiB (default 256, or 32 with -short); half of it is pseudo-random, half
// holes.
//
//	LEVQOR_BENCH_FILE_MB=1024 go test -run '^$' -bench BenchmarkWriteDirectoryLargeFile -benchtime 1x ./pkg/archive/
func BenchmarkWriteDirectoryLargeFile(b *testing.B) {
	mb := 256
	if testing.Short() {
		mb = 32
	}
	if s := os.Getenv("LEVQOR_BENCH_FILE_MB"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(b, err, "LEVQOR_BENCH_FILE_MB")
		mb = n
	}
	size := int64(mb) << 20
	src := b.TempDir()
	writeLargeFile(b, src, mb)
	archivePath := filepath.Join(b.TempDir(), "archive")

	report := func(b *testing.B, h *heapwatch.Sampler) {
		p := h.Done()
		b.ReportMetric(float64(p.InUse)/(1<<20), "peak-heap-MiB")
		b.ReportMetric(float64(p.Growth)/(1<<20), "heap-growth-MiB")
		b.ReportMetric(float64(p.Sys)/(1<<20), "peak-heap-sys-MiB")
	}

	b.Run("Write", func(b *testing.B) {
		b.SetBytes(size)
		var archived int64
		h := heapwatch.Start()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			out, err := os.Create(archivePath)
			require.NoError(b, err)
			w := &countingWriter{}
			_, err = WriteDirectory(context.Background(), io.MultiWriter(out, w), src, nil)
			require.NoError(b, err)
			require.NoError(b, out.Close())
			archived = w.n
		}
		b.StopTimer()
		report(b, h)
		b.ReportMetric(float64(archived)/(1<<20), "archive-MiB")
	})

	b.Run("Verify", func(b *testing.B) {
		b.SetBytes(size)
		h := heapwatch.Start()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			in, err := os.Open(archivePath)
			require.NoError(b, err)
			_, _, err = Verify(context.Background(), in)
			require.NoError(b, err)
			require.NoError(b, in.Close())
		}
		b.StopTimer()
		report(b, h)
	})

	b.Run("Restore", func(b *testing.B) {
		b.SetBytes(size)
		h := heapwatch.Start()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			in, err := os.Open(archivePath)
			require.NoError(b, err)
			target := filepath.Join(b.TempDir(), "restored")
			_, err = RestoreDirectory(context.Background(), in, target, RestoreOptions{})
			require.NoError(b, err)
			require.NoError(b, in.Close())
			b.StopTimer()
			require.NoError(b, os.RemoveAll(target))
			b.StartTimer()
		}
		b.StopTimer()
		report(b, h)
	})
}
