package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
)

// fuzzSeedTree is a small tree with one of each kind of entry.
func fuzzSeedTree(t testing.TB) string {
	src := filepath.Join(t.TempDir(), "seed")
	require.NoError(t, os.MkdirAll(filepath.Join(src, "d", "e"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "d", "f"), []byte("contents"), 0o640))
	require.NoError(t, os.WriteFile(filepath.Join(src, "empty"), nil, 0o600))
	require.NoError(t, os.Symlink("d/f", filepath.Join(src, "ln")))
	return src
}

// checkUntrusted runs Verify on an arbitrary stream and, if it passes, a
// restore, asserting what must hold for any input: no panic, errors that
// say "corrupt" or "unsupported", nothing written outside the target,
// and a restore that succeeds wherever Verify did.
func checkUntrusted(t *testing.T, data []byte) {
	ctx := context.Background()
	m, stats, err := Verify(ctx, bytes.NewReader(data))
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedFormat) {
			t.Fatalf("Verify failed with neither ErrCorrupt nor ErrUnsupportedFormat: %v", err)
		}
	}
	outer := t.TempDir()
	target := filepath.Join(outer, "target")
	rstats, rerr := RestoreDirectory(ctx, bytes.NewReader(data), target, RestoreOptions{})
	if entries, _ := os.ReadDir(outer); len(entries) > 1 || (len(entries) == 1 && entries[0].Name() != "target") {
		t.Fatalf("restore wrote outside its target: %v", entries)
	}
	if err != nil || m.Kind != KindDirectory {
		if rerr == nil {
			t.Fatalf("restore accepted what Verify refused (%v)", err)
		}
		if _, serr := os.Stat(target); !errors.Is(serr, fs.ErrNotExist) {
			t.Fatalf("failed restore left its target behind")
		}
		return
	}
	if rerr != nil {
		t.Fatalf("Verify accepted, restore failed: %v", rerr)
	}
	if rstats != stats {
		t.Fatalf("restore stats %+v, Verify stats %+v", rstats, stats)
	}
}

// FuzzVerify feeds whole archives, as a blob store would hand them back.
func FuzzVerify(f *testing.F) {
	var dir bytes.Buffer
	_, err := WriteDirectory(context.Background(), &dir, fuzzSeedTree(f), nil)
	require.NoError(f, err)
	f.Add(dir.Bytes())
	f.Add(dir.Bytes()[:len(dir.Bytes())/2])
	f.Add(newCrafter(f, KindPostgres).dump([]byte("PGDMP")))
	f.Add([]byte(magic + "\x01d"))
	f.Add([]byte{})
	f.Fuzz(checkUntrusted)
}

// FuzzVerifyBody feeds arbitrary uncompressed bodies, so that the fuzzer
// reaches the record parser instead of stopping at zstd's checksums.
func FuzzVerifyBody(f *testing.F) {
	body := func(archive []byte) []byte {
		dec, err := zstd.NewReader(bytes.NewReader(archive[HeaderSize:]))
		require.NoError(f, err)
		defer dec.Close()
		b, err := io.ReadAll(dec)
		require.NoError(f, err)
		return b
	}
	var dir bytes.Buffer
	_, err := WriteDirectory(context.Background(), &dir, fuzzSeedTree(f), nil)
	require.NoError(f, err)
	f.Add(false, body(dir.Bytes()))
	f.Add(true, body(newCrafter(f, KindPostgres).dump([]byte("PGDMP"))))
	f.Add(false, body(newCrafter(f, KindDirectory).dir(".").symlink("l", "/tmp").dir("l/x").done()))
	f.Add(false, []byte{})
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, postgres bool, body []byte) {
		kind := byte(kindByteDir)
		if postgres {
			kind = kindBytePG
		}
		archive := enc.EncodeAll(body, append([]byte(magic), formatVersion, kind))
		checkUntrusted(t, archive)
	})
}
