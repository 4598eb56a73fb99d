package cli

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func init() {
	registerGroup("trace", "listen [--addr 127.0.0.1:4318]: receive Levqor's traces (OTLP/HTTP) and print each as a tree",
		"trace listen [flags]", map[string]commandFunc{"listen": runTraceListen})
}

// traceBodyLimit bounds one export: the SDK sends batches of at most
// 512 spans, a few hundred KiB.
const traceBodyLimit = 8 << 20

// runTraceListen is a small OTLP/HTTP receiver for trying tracing without
// a collector: point OTEL_EXPORTER_OTLP_ENDPOINT at it, and it prints each
// trace as a tree of its spans once no span of it has arrived for
// --quiet, children under their parent in the order they started.
func runTraceListen(ctx context.Context, args []string, stdout, _ io.Writer, _ Options) error {
	fs := newFlags("trace listen", "trace listen [flags]   receive traces over OTLP/HTTP (http/protobuf) and print each as a tree", stdout)
	addr := fs.String("addr", "127.0.0.1:4318", "address to listen on (OTEL_EXPORTER_OTLP_ENDPOINT=http://<addr>)")
	quiet := fs.Duration("quiet", 2*time.Second, "print a trace once no span of it has arrived for this long")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if *quiet <= 0 {
		return usageError("--quiet must be more than 0")
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	tl := &traceLog{out: stdout, quiet: *quiet, traces: map[string]*traceBuf{}}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(tl.serve)}
	fmt.Fprintf(stdout, "listening on http://%s/v1/traces for OTLP traces\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		tl.flushAll()
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// span is what the tree shows of one span.
type span struct {
	id, parent string
	name       string
	service    string
	start, end time.Time
}

type traceBuf struct {
	spans []span
	timer *time.Timer
	// last is when the newest span came; flush prints only a trace quiet
	// since, as a timer re-armed while it fired may call it early.
	last time.Time
}

// traceLog gathers spans by trace and prints each trace once it is quiet.
type traceLog struct {
	out   io.Writer
	quiet time.Duration

	mu     sync.Mutex
	traces map[string]*traceBuf
}

func (tl *traceLog) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.Error(w, "POST OTLP traces to /v1/traces", http.StatusNotFound)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "want Content-Type application/x-protobuf (OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)", http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, traceBodyLimit)
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, "gzip: "+err.Error(), http.StatusBadRequest)
			return
		}
		defer gz.Close()
		body = io.LimitReader(gz, traceBodyLimit+1)
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(raw) > traceBodyLimit {
		http.Error(w, "an export of more than 8 MiB", http.StatusRequestEntityTooLarge)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		http.Error(w, "not an OTLP trace export: "+err.Error(), http.StatusBadRequest)
		return
	}
	tl.add(&req)
	resp, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

func (tl *traceLog) add(req *collectortrace.ExportTraceServiceRequest) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				id := hex.EncodeToString(s.GetTraceId())
				tb := tl.traces[id]
				if tb == nil {
					tb = &traceBuf{}
					tl.traces[id] = tb
					tb.timer = time.AfterFunc(tl.quiet, func() { tl.flush(id, false) })
				} else {
					tb.timer.Reset(tl.quiet)
				}
				tb.last = time.Now()
				tb.spans = append(tb.spans, span{
					id: hex.EncodeToString(s.GetSpanId()), parent: hex.EncodeToString(s.GetParentSpanId()),
					name: s.GetName(), service: service,
					start: time.Unix(0, int64(s.GetStartTimeUnixNano())), end: time.Unix(0, int64(s.GetEndTimeUnixNano())),
				})
			}
		}
	}
}

// flush prints and forgets trace id once it is quiet, or now if all.
func (tl *traceLog) flush(id string, all bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tb := tl.traces[id]
	if tb == nil || (!all && time.Since(tb.last) < tl.quiet) {
		return // gone, or a span came since: the re-armed timer flushes it
	}
	delete(tl.traces, id)
	fmt.Fprint(tl.out, renderTrace(id, tb.spans))
}

func (tl *traceLog) flushAll() {
	tl.mu.Lock()
	ids := make([]string, 0, len(tl.traces))
	for id, tb := range tl.traces {
		tb.timer.Stop()
		ids = append(ids, id)
	}
	tl.mu.Unlock()
	for _, id := range ids {
		tl.flush(id, true)
	}
}

// millis shows d in milliseconds, to a tenth: one unit throughout a tree.
func millis(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + "ms"
}

// renderTrace draws a trace: a heading, then each span under its parent
// (a span whose parent did not arrive is drawn as a root), children in the
// order they started, with its duration; the service is named on roots
// and where it changes.
func renderTrace(id string, spans []span) string {
	known := map[string]bool{}
	first, last := spans[0].start, spans[0].end
	for _, s := range spans {
		known[s.id] = true
		if s.start.Before(first) {
			first = s.start
		}
		if s.end.After(last) {
			last = s.end
		}
	}
	children := map[string][]span{}
	var roots []span
	for _, s := range spans {
		if s.parent == "" || !known[s.parent] {
			roots = append(roots, s)
			continue
		}
		children[s.parent] = append(children[s.parent], s)
	}
	byStart := func(a, b span) int { return a.start.Compare(b.start) }
	slices.SortStableFunc(roots, byStart)
	var b strings.Builder
	fmt.Fprintf(&b, "trace %s: %d spans, %s\n", id, len(spans), millis(last.Sub(first)))
	var draw func(s span, depth int, parentService string)
	draw = func(s span, depth int, parentService string) {
		fmt.Fprintf(&b, "%s%s", strings.Repeat("  ", depth+1), s.name)
		if s.service != parentService {
			fmt.Fprintf(&b, " [%s]", s.service)
		}
		fmt.Fprintf(&b, " %s\n", millis(s.end.Sub(s.start)))
		kids := children[s.id]
		slices.SortStableFunc(kids, byStart)
		for _, k := range kids {
			draw(k, depth+1, s.service)
		}
	}
	for _, r := range roots {
		draw(r, 0, "")
	}
	return b.String()
}
