package repo_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/repo"
	"github.com/levqor/levqor/pkg/telemetry/heapwatch"
)

// BenchmarkRepoBackupTree backs up a tree into a fresh repository on the
// local disk, changes 1% of its files (every hundredth, in path order: a
// line appended) and adds a 1 MB file of random bytes, and backs it up
// again, reporting each run's time and
// what it stored. LEVQOR_BENCH_TREE names the tree (it is copied first,
// so it is left as it was); without it, the Go runtime's sources and
// 20 MiB of random bytes. docs/benchmarks.md has the figures next to
// restic's on the same tree (`scripts/bench backups`).
func BenchmarkRepoBackupTree(b *testing.B) {
	ctx := context.Background()
	src := os.Getenv("LEVQOR_BENCH_TREE")
	if src == "" {
		src = b.TempDir()
		copyTree(b, filepath.Join(runtime.GOROOT(), "src", "runtime"), filepath.Join(src, "runtime"))
		writeRandom(b, filepath.Join(src, "random.bin"), 20<<20)
	}
	for range b.N {
		b.StopTimer()
		tree := filepath.Join(b.TempDir(), "tree")
		copyTree(b, src, tree)
		dir := b.TempDir()
		blobs, err := blob.NewLocal(dir)
		require.NoError(b, err)
		r := newRepo(b, blobs, dataKey(b))
		b.StartTimer()

		start := time.Now()
		_, first, err := r.BackupDirectory(ctx, tree, nil)
		require.NoError(b, err)
		firstTook := time.Since(start)
		stored := diskUsage(b, dir)

		b.StopTimer()
		changed := changeOnePercent(b, tree)
		b.StartTimer()
		start = time.Now()
		_, second, err := r.BackupDirectory(ctx, tree, first)
		require.NoError(b, err)
		secondTook := time.Since(start)
		added := diskUsage(b, dir) - stored

		b.ReportMetric(float64(first.Stats.Bytes)/(1<<20), "tree-MiB")
		b.ReportMetric(firstTook.Seconds(), "first-s")
		b.ReportMetric(float64(stored)/(1<<20), "first-stored-MiB")
		b.ReportMetric(float64(changed), "files-changed")
		b.ReportMetric(secondTook.Seconds(), "second-s")
		b.ReportMetric(float64(added)/(1<<20), "second-added-MiB")
		b.ReportMetric(float64(second.Stats.Unchanged), "files-not-read")
	}
}

func copyTree(b testing.TB, from, to string) {
	b.Helper()
	require.NoError(b, filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, dst)
		case d.Type().IsRegular():
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.Create(dst)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		}
		return nil
	}))
}

func writeRandom(b testing.TB, path string, n int) {
	b.Helper()
	rng := rand.New(rand.NewPCG(9, 9))
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	require.NoError(b, os.WriteFile(path, buf, 0o644))
}

// changeOnePercent appends a line to every hundredth regular file of
// tree, in path order, and moves its modification time on.
func changeOnePercent(b testing.TB, tree string) int {
	b.Helper()
	var files []string
	require.NoError(b, filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	}))
	sort.Strings(files)
	later := time.Now().Add(time.Minute)
	n := 0
	for i := 99; i < len(files); i += 100 {
		f, err := os.OpenFile(files[i], os.O_APPEND|os.O_WRONLY, 0)
		require.NoError(b, err)
		_, err = f.WriteString("// changed\n")
		require.NoError(b, err)
		require.NoError(b, f.Close())
		require.NoError(b, os.Chtimes(files[i], later, later))
		n++
	}
	// And a new file of 1 MB of random bytes, as scripts/bench adds one.
	added := make([]byte, 1_000_000)
	_, _ = rand.NewChaCha8([32]byte{4}).Read(added)
	require.NoError(b, os.WriteFile(filepath.Join(tree, "added.bin"), added, 0o644))
	return n
}

func diskUsage(b testing.TB, dir string) int64 {
	b.Helper()
	var n int64
	require.NoError(b, filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	}))
	return n
}

// writeBig writes mb MiB of pseudo-random (incompressible) bytes to
// dir/big.bin.
func writeBig(tb testing.TB, dir string, mb int) {
	tb.Helper()
	f, err := os.Create(filepath.Join(dir, "big.bin"))
	require.NoError(tb, err)
	r := rand.NewChaCha8([32]byte{7})
	block := make([]byte, 1<<20)
	for range mb {
		_, _ = r.Read(block)
		_, err := f.Write(block)
		require.NoError(tb, err)
	}
	require.NoError(tb, f.Close())
}

// BenchmarkRepoLargeFile backs up one file of pseudo-random bytes into a
// fresh repository on the local disk and restores it, reporting the
// throughput and the peak Go heap of each. LEVQOR_BENCH_FILE_MB sets the
// size in MiB (default 256):
//
//	LEVQOR_BENCH_FILE_MB=1024 go test -run '^$' -bench BenchmarkRepoLargeFile -benchtime 1x ./pkg/repo/
func BenchmarkRepoLargeFile(b *testing.B) {
	mb := 256
	if s := os.Getenv("LEVQOR_BENCH_FILE_MB"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(b, err, "LEVQOR_BENCH_FILE_MB")
		mb = n
	}
	ctx := context.Background()
	src := b.TempDir()
	writeBig(b, src, mb)
	blobs, err := blob.NewLocal(b.TempDir())
	require.NoError(b, err)
	report := func(b *testing.B, p heapwatch.Peaks, took time.Duration) {
		b.ReportMetric(float64(mb)*(1<<20)/1e6/took.Seconds(), "MB/s")
		b.ReportMetric(float64(p.InUse)/(1<<20), "peak-heap-MiB")
		b.ReportMetric(float64(p.Growth)/(1<<20), "heap-growth-MiB")
	}
	var m *repo.Manifest
	var prev string
	b.Run("Backup", func(b *testing.B) {
		for range b.N {
			// One repository at a time, and the disk's write-back done
			// before the clock starts: each run as the first.
			if prev != "" {
				infos, err := blobs.List(ctx, prev)
				require.NoError(b, err)
				for _, in := range infos {
					require.NoError(b, blobs.Delete(ctx, in.Key))
				}
			}
			prev = fmt.Sprintf("acc_bench%d/", time.Now().UnixNano())
			r := newRepoAt(b, blobs, prev+"repo/", dataKey(b))
			syscall.Sync()
			h := heapwatch.Start()
			start := time.Now()
			_, m, err = r.BackupDirectory(ctx, src, nil)
			took := time.Since(start)
			p := h.Done()
			require.NoError(b, err)
			report(b, p, took)
			restoreFrom = r
		}
	})
	b.Run("Restore", func(b *testing.B) {
		for range b.N {
			target := b.TempDir()
			syscall.Sync()
			h := heapwatch.Start()
			start := time.Now()
			_, n, err := restoreFrom.Restore(ctx, m, target, nil)
			took := time.Since(start)
			p := h.Done()
			require.NoError(b, err)
			require.Equal(b, int64(mb)<<20, n)
			report(b, p, took)
		}
	})
}

// restoreFrom is the repository BenchmarkRepoLargeFile's backup wrote.
var restoreFrom *repo.Repo

// TestRepoMemoryStaysFlat: backing up and restoring a file four times
// larger takes no more heap: what a backup holds is its fixed buffers
// (two chunks, the open pack, the compressor's window), never the file.
// Not parallel, so that other tests' allocations do not blur it.
func TestRepoMemoryStaysFlat(t *testing.T) {
	ctx := context.Background()
	growth := func(mb int) (backup, restore uint64) {
		src := t.TempDir()
		writeBig(t, src, mb)
		blobs, err := blob.NewLocal(t.TempDir())
		require.NoError(t, err)
		r := newRepo(t, blobs, fixedKey(8))
		h := heapwatch.Start()
		_, m, err := r.BackupDirectory(ctx, src, nil)
		backup = h.Done().Growth
		require.NoError(t, err)
		h = heapwatch.Start()
		_, n, err := r.Restore(ctx, m, t.TempDir(), nil)
		restore = h.Done().Growth
		require.NoError(t, err)
		require.Equal(t, int64(mb)<<20, n)
		t.Logf("%d MiB: heap grew by %.1f MiB backing up, %.1f MiB restoring", mb, float64(backup)/(1<<20), float64(restore)/(1<<20))
		return backup, restore
	}
	smallB, smallR := growth(24)
	bigB, bigR := growth(96)
	require.Less(t, bigB, smallB+24<<20, "backing up 4x the bytes takes no more heap")
	require.Less(t, bigR, smallR+24<<20, "restoring 4x the bytes takes no more heap")
	require.Less(t, bigB, uint64(96<<20), "less than the file")
}
