package repo_test

import (
	"context"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/blob"
)

// BenchmarkRepoBackupTree backs up a tree into a fresh repository on the
// local disk, changes 1% of its files (every hundredth, in path order: a
// line appended), and backs it up again, reporting each run's time and
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
