package archive

import (
	"context"
	"errors"
	"io"
)

// Verify reads a whole archive of either kind from r and checks it: the
// fixed header, every record's framing and limits, each file's (or the
// dump's) SHA-256, the directory structure rules a restore relies on, the
// trailer's counts and the end record's hash of the stream. It returns
// the manifest rebuilt from the stream and what it checked.
//
// Any damage is an error wrapping ErrCorrupt; a failure of r itself and a
// cancelled ctx are returned unwrapped, so that they are never mistaken
// for a corrupt snapshot. Memory use does not depend on file sizes.
func Verify(ctx context.Context, r io.Reader) (Manifest, Stats, error) {
	sr, err := openStream(ctx, r, nil)
	if err != nil {
		return Manifest{}, Stats{}, err
	}
	defer sr.close()
	sr.keepFiles = true
	if sr.kind == KindPostgres {
		if err := sr.finish(); err != nil {
			return Manifest{}, Stats{}, err
		}
		return sr.manifest, Stats{Files: 1, Bytes: sr.bytes}, nil
	}
	for {
		_, err := sr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Manifest{}, Stats{}, err
		}
	}
	return sr.manifest, Stats{Files: int(sr.files), Bytes: sr.bytes}, nil
}
