package archive

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
)

// HeaderSize is the length of an archive's fixed, uncompressed header:
// the magic "LVQARC", the format version and the kind byte.
const HeaderSize = 8

// Fixed header fields (see doc.go).
const (
	magic         = "LVQARC"
	formatVersion = 1
	kindByteDir   = 'd'
	kindBytePG    = 'p'
)

// Record types of the compressed body (see doc.go).
const (
	recHeader  = 'A'
	recEntry   = 'E'
	recData    = 'D'
	recSum     = 'S'
	recTrailer = 'T'
	recEnd     = 'Z'
)

// Size limits. Writers stay well under them; readers refuse anything
// larger, so a damaged or hostile stream cannot make them allocate much.
const (
	// writeChunk is the size of the data records writers emit.
	writeChunk = 256 << 10
	// maxDataRecord bounds one data record's payload.
	maxDataRecord = 1 << 20
	// maxMetaRecord bounds a header, entry or trailer record's payload.
	maxMetaRecord = 64 << 10
	// encoderWindow is the zstd window writers use; maxDecoderWindow is
	// the largest window readers accept.
	encoderWindow    = 4 << 20
	maxDecoderWindow = 16 << 20
)

// streamHeader is the body's first record.
type streamHeader struct {
	Format    int       `json:"format"`
	Kind      string    `json:"kind"`
	CreatedAt time.Time `json:"created_at"`
}

// entryRecord is an entry as the stream stores it. Names that are not
// valid UTF-8 (legal on most Unix file systems) travel as bytes, base64 in
// JSON, so they survive exactly.
type entryRecord struct {
	Path      string    `json:"path,omitempty"`
	PathBytes []byte    `json:"path_bytes,omitempty"`
	Type      string    `json:"type"`
	Mode      uint32    `json:"mode"`
	ModTime   time.Time `json:"mod_time"`
	Size      int64     `json:"size"`
	Link      string    `json:"link,omitempty"`
	LinkBytes []byte    `json:"link_bytes,omitempty"`
}

// trailer is the body's last record before the end record.
type trailer struct {
	Entries     int64 `json:"entries"`
	Files       int64 `json:"files"`
	SourceBytes int64 `json:"source_bytes"`
}

func kindByte(kind string) byte {
	if kind == KindPostgres {
		return kindBytePG
	}
	return kindByteDir
}

func parseFixedHeader(h []byte) (string, error) {
	if string(h[:len(magic)]) != magic {
		return "", fmt.Errorf("%w: not a levqor archive (bad magic bytes)", ErrCorrupt)
	}
	if h[6] != formatVersion {
		return "", fmt.Errorf("%w: format version %d (this release reads version %d)", ErrUnsupportedFormat, h[6], formatVersion)
	}
	switch h[7] {
	case kindByteDir:
		return KindDirectory, nil
	case kindBytePG:
		return KindPostgres, nil
	default:
		return "", fmt.Errorf("%w: unknown archive kind byte %q", ErrUnsupportedFormat, h[7])
	}
}

// streamWriter writes the fixed header and the compressed body's records.
type streamWriter struct {
	enc  *zstd.Encoder
	meta hash.Hash
	hdr  []byte
}

// newStreamWriter writes the fixed header to w and starts the compressed
// body with its header record.
func newStreamWriter(w io.Writer, kind string, created time.Time) (*streamWriter, error) {
	fixed := append([]byte(magic), formatVersion, kindByte(kind))
	if _, err := w.Write(fixed); err != nil {
		return nil, fmt.Errorf("archive: writing header: %w", err)
	}
	enc, err := zstd.NewWriter(w,
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(encoderWindow),
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithLowerEncoderMem(true),
		zstd.WithEncoderCRC(true),
	)
	if err != nil {
		return nil, fmt.Errorf("archive: starting compressor: %w", err)
	}
	sw := &streamWriter{enc: enc, meta: sha256.New(), hdr: make([]byte, 0, 1+binary.MaxVarintLen64)}
	if err := sw.writeJSON(recHeader, streamHeader{Format: formatVersion, Kind: kind, CreatedAt: created}); err != nil {
		return nil, err
	}
	return sw, nil
}

func (s *streamWriter) record(typ byte, payload []byte) error {
	h := append(s.hdr[:0], typ)
	h = binary.AppendUvarint(h, uint64(len(payload)))
	s.meta.Write(h)
	if typ != recData {
		s.meta.Write(payload)
	}
	if _, err := s.enc.Write(h); err != nil {
		return fmt.Errorf("archive: writing: %w", err)
	}
	if _, err := s.enc.Write(payload); err != nil {
		return fmt.Errorf("archive: writing: %w", err)
	}
	return nil
}

func (s *streamWriter) writeJSON(typ byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("archive: encoding record: %w", err)
	}
	return s.record(typ, b)
}

// data writes p as data records of at most maxDataRecord bytes.
func (s *streamWriter) data(p []byte) error {
	for len(p) > 0 {
		n := min(len(p), maxDataRecord)
		if err := s.record(recData, p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// finish writes the trailer and end records and closes the compressed
// body. Only a stream that reached finish is a valid archive.
func (s *streamWriter) finish(t trailer) error {
	if err := s.writeJSON(recTrailer, t); err != nil {
		return err
	}
	sum := s.meta.Sum(nil)
	h := append(s.hdr[:0], recEnd)
	h = binary.AppendUvarint(h, uint64(len(sum)))
	if _, err := s.enc.Write(append(h, sum...)); err != nil {
		return fmt.Errorf("archive: writing: %w", err)
	}
	if err := s.enc.Close(); err != nil {
		return fmt.Errorf("archive: writing: %w", err)
	}
	return nil
}

// trackingReader remembers the first error of the reader under the
// decompressor, so that the stream reader can tell the source's own
// failures (returned as they are) from damage (ErrCorrupt).
type trackingReader struct {
	r   io.Reader
	err error
}

func (t *trackingReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF && t.err == nil {
		t.err = err
	}
	return n, err
}

// streamReader reads and checks an archive: the fixed header, then the
// body's records one by one. Directory archives are read with next and
// Read; a postgres archive's dump with Read alone, then finish.
type streamReader struct {
	ctx      context.Context
	src      *trackingReader
	dec      *zstd.Decoder
	br       *bufio.Reader
	meta     hash.Hash
	buf      []byte
	kind     string
	header   streamHeader
	progress *progressTracker

	// keepFiles makes next collect every entry into manifest.Files.
	keepFiles bool
	manifest  Manifest
	entries   int64
	files     int64
	bytes     int64

	// Directory structure checks.
	prev []string        // components of the previous entry's path
	dirs map[string]bool // directory entries seen so far

	// The entry whose data is being read.
	cur       *FileEntry
	curKnown  bool  // cur.Size is known (a file) rather than open (a dump)
	curLeft   int64 // data bytes still to come, when curKnown
	curSeen   int64 // data bytes read so far
	curHash   hash.Hash
	recLeft   int64 // payload bytes left in the current data record
	dataDone  bool
	finished  bool
	failedErr error
}

// openStream reads the fixed header and the body's header record.
func openStream(ctx context.Context, r io.Reader, p Progress) (*streamReader, error) {
	src := &trackingReader{r: r}
	var h [HeaderSize]byte
	if _, err := io.ReadFull(src, h[:]); err != nil {
		if src.err != nil {
			return nil, fmt.Errorf("archive: reading: %w", src.err)
		}
		return nil, fmt.Errorf("%w: stream shorter than its %d-byte header", ErrCorrupt, HeaderSize)
	}
	kind, err := parseFixedHeader(h[:])
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(src,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxDecoderWindow),
	)
	if err != nil {
		return nil, fmt.Errorf("archive: starting decompressor: %w", err)
	}
	sr := &streamReader{
		ctx:      ctx,
		src:      src,
		dec:      dec,
		br:       bufio.NewReaderSize(dec, 64<<10),
		meta:     sha256.New(),
		buf:      make([]byte, 0, 4096),
		kind:     kind,
		progress: newProgressTracker(p),
		dirs:     map[string]bool{},
	}
	typ, n, err := sr.recordHeader()
	if err != nil {
		sr.close()
		return nil, err
	}
	if typ != recHeader {
		sr.close()
		return nil, sr.corrupt("stream starts with record %q, not a header", typ)
	}
	payload, err := sr.payload(n)
	if err != nil {
		sr.close()
		return nil, err
	}
	if err := strictJSON(payload, &sr.header); err != nil {
		sr.close()
		return nil, sr.corrupt("header record: %v", err)
	}
	if sr.header.Format != formatVersion || sr.header.Kind != kind {
		sr.close()
		return nil, sr.corrupt("header record says format %d kind %q, fixed header says %d %q",
			sr.header.Format, sr.header.Kind, formatVersion, kind)
	}
	sr.manifest = Manifest{Kind: kind, CreatedAt: sr.header.CreatedAt.UTC()}
	if kind == KindPostgres {
		sr.cur = &FileEntry{}
		sr.curHash = sha256.New()
	}
	return sr, nil
}

func (r *streamReader) close() { r.dec.Close() }

// fail turns an error met while reading into what the caller sees: the
// source's own error, the context's, or ErrCorrupt. It is sticky.
func (r *streamReader) fail(err error) error {
	if r.failedErr != nil {
		return r.failedErr
	}
	switch {
	case r.src.err != nil:
		err = fmt.Errorf("archive: reading: %w", r.src.err)
	case r.ctx.Err() != nil:
		err = r.ctx.Err()
	case errors.Is(err, ErrCorrupt):
	default:
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		err = fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	r.failedErr = err
	return err
}

func (r *streamReader) corrupt(format string, args ...any) error {
	return r.fail(fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...)))
}

// recordHeader reads a record's type and length and checks them against
// the limits. It adds the header to the running body hash, except for the
// end record, whose payload is that hash.
func (r *streamReader) recordHeader() (byte, int64, error) {
	if r.failedErr != nil {
		return 0, 0, r.failedErr
	}
	if err := r.ctx.Err(); err != nil {
		return 0, 0, r.fail(err)
	}
	typ, err := r.br.ReadByte()
	if err != nil {
		return 0, 0, r.fail(err)
	}
	n, err := binary.ReadUvarint(r.br)
	if err != nil {
		return 0, 0, r.fail(err)
	}
	limit := uint64(maxMetaRecord)
	switch typ {
	case recData:
		limit = maxDataRecord
		if n == 0 {
			return 0, 0, r.corrupt("empty data record")
		}
	case recSum, recEnd:
		if n != sha256.Size {
			return 0, 0, r.corrupt("record %q of %d bytes, want %d", typ, n, sha256.Size)
		}
	case recHeader, recEntry, recTrailer:
	default:
		return 0, 0, r.corrupt("unknown record type %q", typ)
	}
	if n > limit {
		return 0, 0, r.corrupt("record %q of %d bytes exceeds the limit of %d", typ, n, limit)
	}
	if typ != recEnd {
		r.meta.Write([]byte{typ})
		r.meta.Write(binary.AppendUvarint(nil, n))
	}
	return typ, int64(n), nil
}

// payload reads a non-data record's payload and adds it to the body hash.
func (r *streamReader) payload(n int64) ([]byte, error) {
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	b := r.buf[:n]
	if _, err := io.ReadFull(r.br, b); err != nil {
		return nil, r.fail(err)
	}
	r.meta.Write(b)
	return b, nil
}

// strictJSON decodes one JSON value, refusing unknown fields and trailing
// bytes.
func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

// next returns the next entry of a directory archive, or io.EOF once the
// trailer and end records have been read and checked. Data of the previous
// file entry that the caller did not read is read (and checked) first.
func (r *streamReader) next() (*FileEntry, error) {
	if r.kind != KindDirectory {
		return nil, fmt.Errorf("archive: next on a %s archive", r.kind)
	}
	if r.finished {
		return nil, io.EOF
	}
	if r.cur != nil && !r.dataDone {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return nil, err
		}
	}
	r.cur = nil
	typ, n, err := r.recordHeader()
	if err != nil {
		return nil, err
	}
	payload := []byte(nil)
	if typ == recEntry || typ == recTrailer {
		if payload, err = r.payload(n); err != nil {
			return nil, err
		}
	}
	switch typ {
	case recTrailer:
		if err := r.readEnd(payload); err != nil {
			return nil, err
		}
		return nil, io.EOF
	case recEntry:
	default:
		return nil, r.corrupt("record %q where an entry or the trailer belongs", typ)
	}
	var rec entryRecord
	if err := strictJSON(payload, &rec); err != nil {
		return nil, r.corrupt("entry %d: %v", r.entries+1, err)
	}
	e, err := r.checkEntry(rec)
	if err != nil {
		return nil, r.fail(err)
	}
	r.entries++
	if e.Type != TypeFile {
		if r.keepFiles {
			r.manifest.Files = append(r.manifest.Files, *e)
		}
		return e, nil
	}
	r.files++
	r.cur = e
	r.curKnown = true
	r.curLeft = e.Size
	r.curSeen = 0
	r.curHash = sha256.New()
	r.recLeft = 0
	r.dataDone = false
	return e, nil
}

// checkEntry validates an entry record against the format's rules and the
// entries before it: a clean relative path, after its predecessor in walk
// order, under a directory the archive already holds, with a type, mode,
// size and link that agree.
func (r *streamReader) checkEntry(rec entryRecord) (*FileEntry, error) {
	p, err := pickName(rec.Path, rec.PathBytes, "path")
	if err != nil {
		return nil, err
	}
	link, err := pickName(rec.Link, rec.LinkBytes, "link")
	if err != nil {
		return nil, err
	}
	e := &FileEntry{Path: p, Type: rec.Type, Mode: rec.Mode, ModTime: rec.ModTime.UTC(), Size: rec.Size, Link: link}
	if err := checkPath(p); err != nil {
		return nil, fmt.Errorf("%w: entry %q: %v", ErrCorrupt, p, err)
	}
	first := r.entries == 0
	if first != (p == ".") {
		if first {
			return nil, fmt.Errorf("%w: first entry is %q, not the root \".\"", ErrCorrupt, p)
		}
		return nil, fmt.Errorf("%w: the root \".\" appears again", ErrCorrupt)
	}
	var comps []string
	if !first {
		comps = strings.Split(p, "/")
		if compareComponents(r.prev, comps) >= 0 {
			return nil, fmt.Errorf("%w: entry %q is out of order or repeated", ErrCorrupt, p)
		}
		if parent := path.Dir(p); !r.dirs[parent] {
			return nil, fmt.Errorf("%w: entry %q is not under a directory of the archive", ErrCorrupt, p)
		}
	}
	mode := fs.FileMode(e.Mode)
	const allowed = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
	var wantType fs.FileMode
	switch e.Type {
	case TypeDir:
		wantType = fs.ModeDir
	case TypeSymlink:
		wantType = fs.ModeSymlink
		if link == "" || strings.IndexByte(link, 0) >= 0 {
			return nil, fmt.Errorf("%w: symlink %q has an empty or invalid target", ErrCorrupt, p)
		}
	case TypeFile:
		if e.Size < 0 {
			return nil, fmt.Errorf("%w: file %q has negative size", ErrCorrupt, p)
		}
	default:
		return nil, fmt.Errorf("%w: entry %q has unknown type %q", ErrCorrupt, p, e.Type)
	}
	if mode&^allowed != wantType {
		return nil, fmt.Errorf("%w: entry %q has mode %v, which does not fit type %s", ErrCorrupt, p, mode, e.Type)
	}
	if first && e.Type != TypeDir {
		return nil, fmt.Errorf("%w: the root is a %s, not a directory", ErrCorrupt, e.Type)
	}
	if e.Type != TypeFile && e.Size != 0 {
		return nil, fmt.Errorf("%w: %s %q has a size", ErrCorrupt, e.Type, p)
	}
	if e.Type != TypeSymlink && link != "" {
		return nil, fmt.Errorf("%w: %s %q has a link target", ErrCorrupt, e.Type, p)
	}
	if e.Type == TypeDir {
		r.dirs[p] = true
	}
	r.prev = comps
	return e, nil
}

// pickName returns whichever of the string and bytes forms is set; exactly
// one must be, except that both are empty for "no link".
func pickName(s string, b []byte, field string) (string, error) {
	switch {
	case s != "" && b != nil:
		return "", fmt.Errorf("%w: entry has both %s and %s_bytes", ErrCorrupt, field, field)
	case b != nil:
		if len(b) == 0 || utf8.Valid(b) {
			return "", fmt.Errorf("%w: %s_bytes holds a name that belongs in %s", ErrCorrupt, field, field)
		}
		return string(b), nil
	default:
		return s, nil
	}
}

// nameFields splits a name into the entry record's string or bytes form.
func nameFields(s string) (string, []byte) {
	if utf8.ValidString(s) {
		return s, nil
	}
	return "", []byte(s)
}

// checkPath accepts "." and clean relative slash paths without "." or
// ".." components or NUL bytes.
func checkPath(p string) error {
	if p == "." {
		return nil
	}
	if p == "" {
		return errors.New("empty path")
	}
	if strings.IndexByte(p, 0) >= 0 {
		return errors.New("path contains a NUL byte")
	}
	if strings.HasPrefix(p, "/") {
		return errors.New("absolute path")
	}
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "":
			return errors.New("empty path component")
		case ".", "..":
			return fmt.Errorf("path component %q", c)
		}
	}
	return nil
}

// compareComponents orders paths as a depth-first walk visiting each
// directory's names in byte order does: component by component.
func compareComponents(a, b []string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := strings.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

// Read reads the current entry's data (a file's contents or the dump).
// It returns io.EOF only after the sum record has matched; a mismatch is
// ErrCorrupt.
func (r *streamReader) Read(p []byte) (int, error) {
	if r.failedErr != nil {
		return 0, r.failedErr
	}
	if r.cur == nil || r.dataDone {
		return 0, io.EOF
	}
	for r.recLeft == 0 {
		typ, n, err := r.recordHeader()
		if err != nil {
			return 0, err
		}
		switch typ {
		case recData:
			if r.curKnown && n > r.curLeft {
				return 0, r.corrupt("%q holds more data than its size %d", r.cur.Path, r.cur.Size)
			}
			r.recLeft = n
		case recSum:
			if r.curKnown && r.curLeft != 0 {
				return 0, r.corrupt("%q ends %d bytes short of its size %d", r.cur.Path, r.curLeft, r.cur.Size)
			}
			stored, err := r.payload(n)
			if err != nil {
				return 0, err
			}
			got := r.curHash.Sum(nil)
			if !bytes.Equal(stored, got) {
				if r.kind == KindPostgres {
					return 0, r.corrupt("dump checksum mismatch")
				}
				return 0, r.corrupt("checksum mismatch in %q", r.cur.Path)
			}
			r.finishData(hex.EncodeToString(got))
			return 0, io.EOF
		default:
			return 0, r.corrupt("record %q inside the data of %q", typ, r.cur.Path)
		}
	}
	if int64(len(p)) > r.recLeft {
		p = p[:r.recLeft]
	}
	n, err := r.br.Read(p)
	if n > 0 {
		r.curHash.Write(p[:n])
		r.recLeft -= int64(n)
		r.curSeen += int64(n)
		if r.curKnown {
			r.curLeft -= int64(n)
		}
		r.bytes += int64(n)
		r.progress.add(int64(n))
		return n, nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return 0, r.fail(err)
}

func (r *streamReader) finishData(sum string) {
	r.dataDone = true
	r.cur.SHA256 = sum
	if r.kind == KindPostgres {
		r.cur.Size = r.curSeen
		r.manifest.DumpSHA256 = sum
		r.manifest.DumpSize = r.curSeen
		return
	}
	if r.keepFiles {
		r.manifest.Files = append(r.manifest.Files, *r.cur)
	}
}

// finish reads a postgres archive's trailer and end records. The dump must
// have been read to io.EOF.
func (r *streamReader) finish() error {
	if r.finished {
		return nil
	}
	if !r.dataDone {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
	}
	typ, n, err := r.recordHeader()
	if err != nil {
		return err
	}
	if typ != recTrailer {
		return r.corrupt("record %q where the trailer belongs", typ)
	}
	payload, err := r.payload(n)
	if err != nil {
		return err
	}
	r.files = 1
	return r.readEnd(payload)
}

// readEnd checks the trailer's counts, then the end record's body hash,
// then that nothing follows.
func (r *streamReader) readEnd(payload []byte) error {
	var t trailer
	if err := strictJSON(payload, &t); err != nil {
		return r.corrupt("trailer: %v", err)
	}
	if t.Entries != r.entries || t.Files != r.files || t.SourceBytes != r.bytes {
		return r.corrupt("trailer counts %d entries, %d files, %d bytes; stream holds %d, %d, %d",
			t.Entries, t.Files, t.SourceBytes, r.entries, r.files, r.bytes)
	}
	want := r.meta.Sum(nil)
	typ, n, err := r.recordHeader()
	if err != nil {
		return err
	}
	if typ != recEnd {
		return r.corrupt("record %q where the end record belongs", typ)
	}
	got := make([]byte, n)
	if _, err := io.ReadFull(r.br, got); err != nil {
		return r.fail(err)
	}
	if !bytes.Equal(got, want) {
		return r.corrupt("stream checksum mismatch")
	}
	if _, err := r.br.ReadByte(); err != io.EOF {
		if err == nil {
			return r.corrupt("data after the end record")
		}
		return r.fail(err)
	}
	r.finished = true
	r.manifest.SourceBytes = r.bytes
	r.progress.finish()
	return nil
}
