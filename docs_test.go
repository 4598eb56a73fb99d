package levqor_test

// The documentation's examples, run. Every ```console block of README.md and
// docs/*.md is executed against a real dev mode (the levqor binary built from
// this checkout, with its embedded NATS, SQLite and Stripe stand-in), and the
// output each command prints is compared with what the document shows after
// masking what legitimately changes from run to run (ids, times, ports,
// compressed sizes). A document whose example no longer reproduces fails
// here, not in front of a newcomer.
//
// The format of a console block:
//
//	$ command                 a command; a line ending in \ or an unfinished
//	    continued             quote continues it
//	output                    what the command prints (stdout and stderr), up
//	…                         to the next "$ "; a … stands for anything omitted
//	# a remark                lines starting with "# " are prose, not output
//
// A command that shows no output must print nothing. A read-only command
// (curl without -X or -d, optionally piped to jq, assigning nothing; or
// levqor status, stuck and dlq list) whose output does not match yet is
// repeated for up to docsPollLimit: the docs show the state once the
// workers have handled what came before, or a retry schedule has moved on. The commands of one
// document run in one bash session, in order, so variables carry over, in a
// scratch directory that holds a copy of examples/. The docs' fixed addresses
// are the test's: http://127.0.0.1:8080 is rewritten to the test's ingest URL
// and LEVQOR_HTTP_ADDR, LEVQOR_DEV_NATS_ADDR and LEVQOR_DATA_DIR point the CLI
// at the test's dev mode; `go run ./cmd/levqor` is the built binary.
//
// A block that cannot run here is marked in the Markdown, just before its
// fence, and the test logs how many commands ran and how many were marked:
//
//	<!-- docs-test: skip (why) -->
//
// A document not covered at all must be listed in docsNotCovered, with why.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/stripemock"
)

const (
	docsURL       = "http://127.0.0.1:8080" // the ingest URL the docs show
	docsWorkDir   = "/home/ada/levqor-demo" // the working directory the docs show
	docsCmdLimit  = 90 * time.Second        // longest a single documented command may take
	docsPollLimit = 60 * time.Second        // longest a read-only command is repeated until it shows what the doc shows
	docsDevReady  = 90 * time.Second        // longest dev mode may take to become ready
	docsSLATarget = "15s"                   // README's 2-minute SLA target, compressed
)

// docsNotCovered lists the documents with console blocks that the test does
// not run, and why; every other document with a console block is run. It
// is empty: every document is run.
var docsNotCovered = map[string]string{}

// docsSessions says how each covered document is run: whether it needs dev
// mode, and the rewrites that compress the docs' waiting times. A document
// with console blocks that is in neither map fails the test.
var docsSessions = map[string]docsSession{
	"README.md": {
		dev: true,
		// The README starts dev mode with a 2-minute critical target and
		// waits for it to pass; the test uses a shorter one.
		devSupportRules: map[string]string{
			"critical: {first_response: 15m, resolution: 4h}": "critical: {first_response: " + docsSLATarget + ", resolution: 4h}",
		},
		rewrite: []string{"sleep 120", "sleep 16"},
		// The test runs the commands back to back, faster than anyone
		// types: right after `snapshot seed` has spent the key's burst of
		// 20, the next request would be refused with 429 (a person's next
		// command comes seconds later, when the bucket has refilled).
		devEnv: map[string]string{"LEVQOR_API_BURST": "200"},
	},
	"docs/operating.md": {
		dev: true,
		// The incident breaks dev mode's database with the sqlite3 shell.
		tools: []string{"sqlite3"},
		// The backfill lists events from stripe-mock, which the page
		// starts on 127.0.0.1:12111.
		stripeMock: "http://127.0.0.1:12111",
	},
	"docs/backups.md": {
		dev: true,
		// Seeding 30 snapshots spends the key's burst; see README.md.
		devEnv: map[string]string{"LEVQOR_API_BURST": "200"},
	},
	"docs/tracing.md": {
		dev: true,
		// What the document says dev mode was started with: spans to
		// `levqor trace listen`, exported every 200 ms.
		devEnv: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_BSP_SCHEDULE_DELAY": "200"},
	},
	"docs/retention.md": {},
	"docs/catalog.md":   {},
	"docs/support.md":   {},
}

type docsSession struct {
	dev             bool              // start dev mode for this document
	devSupportRules map[string]string // if set, dev mode runs a copy of the shipped support rules with these replacements
	rewrite         []string          // old, new pairs applied to every command
	devEnv          map[string]string // extra environment of dev mode, each with its reason
	tools           []string          // programs the document's commands run, besides bash, curl and jq
	stripeMock      string            // if set, the URL the document starts stripe-mock on; the test starts one and rewrites it
}

// docBlock is one ```console block.
type docBlock struct {
	line int    // of the opening fence, 1-based
	skip string // why the block is not run, from its marker; "" runs it
	cmds []docCommand
}

// docCommand is one "$ " command of a block and the output the doc shows.
type docCommand struct {
	line int
	text string
	want []string
}

var docsMarker = regexp.MustCompile(`^<!--\s*docs-test:\s*([a-z-]+)\s*(?:\((.*)\))?\s*-->$`)

// parseDocBlocks returns the console blocks of a Markdown document.
func parseDocBlocks(t *testing.T, name string, text string) []docBlock {
	t.Helper()
	lines := strings.Split(text, "\n")
	var blocks []docBlock
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```console" {
			continue
		}
		b := docBlock{line: i + 1}
		for j := i - 1; j >= 0; j-- {
			prev := strings.TrimSpace(lines[j])
			if prev == "" {
				continue
			}
			if m := docsMarker.FindStringSubmatch(prev); m != nil {
				require.Equalf(t, "skip", m[1], "%s:%d: unknown docs-test directive", name, j+1)
				require.NotEmptyf(t, m[2], "%s:%d: a skip says why: <!-- docs-test: skip (why) -->", name, j+1)
				b.skip = m[2]
			}
			break
		}
		i++
		for ; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			line := lines[i]
			switch {
			case strings.HasPrefix(line, "$ "):
				c := docCommand{line: i + 1, text: strings.TrimPrefix(line, "$ ")}
				for i+1 < len(lines) && (strings.HasSuffix(c.text, `\`) || shellIncomplete(c.text)) {
					i++
					c.text += "\n" + lines[i]
				}
				b.cmds = append(b.cmds, c)
			case line == "#" || strings.HasPrefix(line, "# "), strings.TrimSpace(line) == "":
			default:
				require.NotEmptyf(t, b.cmds, "%s:%d: output before the block's first command", name, i+1)
				c := &b.cmds[len(b.cmds)-1]
				c.want = append(c.want, line)
			}
		}
		blocks = append(blocks, b)
	}
	return blocks
}

// shellIncomplete reports whether bash would wait for more input after
// script: an open quote, parenthesis or here-document.
func shellIncomplete(script string) bool {
	out, err := exec.Command("bash", "-n", "-c", script).CombinedOutput()
	return err != nil && (strings.Contains(string(out), "unexpected end of file") || strings.Contains(string(out), "unexpected EOF"))
}

func TestDocs(t *testing.T) {
	requireTool(t, "bash")
	requireTool(t, "curl")
	requireTool(t, "jq")

	docs, err := filepath.Glob("docs/*.md")
	require.NoError(t, err)
	docs = append([]string{"README.md"}, docs...)

	bin := buildLevqor(t)
	for _, doc := range docs {
		raw, err := os.ReadFile(doc)
		require.NoError(t, err)
		blocks := parseDocBlocks(t, doc, string(raw))
		if len(blocks) == 0 {
			continue
		}
		name := strings.TrimSuffix(filepath.Base(doc), ".md")
		t.Run(name, func(t *testing.T) {
			if why, ok := docsNotCovered[doc]; ok {
				n := 0
				for _, b := range blocks {
					n += len(b.cmds)
				}
				t.Skipf("NOT COVERED: %d commands in %d console blocks of %s: %s", n, len(blocks), doc, why)
			}
			sess, ok := docsSessions[doc]
			require.Truef(t, ok, "%s has console blocks: add it to docsSessions (or, with a reason, docsNotCovered)", doc)
			runDoc(t, bin, doc, sess, blocks)
		})
	}
}

// buildLevqor builds the levqor binary of this checkout into a directory of
// its own and returns that directory, to put on PATH.
func buildLevqor(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "levqor"), "./cmd/levqor")
	out, err := cmd.CombinedOutput()
	require.NoErrorf(t, err, "go build ./cmd/levqor:\n%s", out)
	return dir
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// docsEnv is the environment of dev mode and of the documents' shell: the
// test's, without any Levqor or Stripe setting that would point elsewhere.
func docsEnv(binDir string, set map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "LEVQOR_") || strings.HasPrefix(k, "STRIPE_") || k == "PATH" || k == "TZ" || k == "TMPDIR" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"), "TZ=UTC", "TMPDIR=/tmp")
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return env
}

func runDoc(t *testing.T, binDir, doc string, sess docsSession, blocks []docBlock) {
	start := time.Now()
	work := t.TempDir()
	require.NoError(t, os.CopyFS(filepath.Join(work, "examples"), os.DirFS("examples")))

	vars := map[string]string{}
	url := docsURL
	if sess.dev {
		httpAddr, natsAddr := freeAddr(t), freeAddr(t)
		url = "http://" + httpAddr
		vars["LEVQOR_DATA_DIR"] = filepath.Join(work, ".levqor")
		vars["LEVQOR_HTTP_ADDR"] = httpAddr
		vars["LEVQOR_DEV_NATS_ADDR"] = natsAddr
		devVars := map[string]string{}
		for k, v := range vars {
			devVars[k] = v
		}
		for k, v := range sess.devEnv {
			devVars[k] = v
		}
		if sess.devSupportRules != nil {
			rules, err := os.ReadFile("pkg/support/triage/rules.default.yaml")
			require.NoError(t, err)
			text := string(rules)
			for old, repl := range sess.devSupportRules {
				require.Containsf(t, text, old, "the shipped support rules no longer hold %q", old)
				text = strings.ReplaceAll(text, old, repl)
			}
			path := filepath.Join(t.TempDir(), "rules.yaml")
			require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
			devVars["LEVQOR_SUPPORT_RULES"] = path
		}
		startDev(t, binDir, work, devVars, url)
	}

	for _, tool := range sess.tools {
		requireTool(t, tool)
	}
	sh := startShell(t, work, docsEnv(binDir, vars))
	rewrite := append([]string{docsURL, url, "go run ./cmd/levqor", "levqor"}, sess.rewrite...)
	if sess.stripeMock != "" {
		rewrite = append(rewrite, sess.stripeMock, stripemock.Start(t))
	}
	replacer := strings.NewReplacer(rewrite...)
	masker := newDocsMasker(work, url)

	// LEVQOR_DOCS_TRANSCRIPT names a file that receives every command's
	// real output, unmasked, for writing a document's examples from a run.
	var transcript io.Writer
	if path := os.Getenv("LEVQOR_DOCS_TRANSCRIPT"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		require.NoError(t, err)
		defer f.Close()
		transcript = f
	}
	ran, skipped := 0, 0
	for _, b := range blocks {
		if b.skip != "" {
			skipped += len(b.cmds)
			t.Logf("%s:%d: %d commands marked skipped: %s", doc, b.line, len(b.cmds), b.skip)
			continue
		}
		for _, c := range b.cmds {
			ran++
			command := replacer.Replace(c.text)
			got, rc, err := sh.run(command)
			require.NoErrorf(t, err, "%s:%d: $ %s", doc, c.line, c.text)
			// The docs show the state once the workers have caught up (or
			// a retry schedule has moved on); a read-only command is run
			// again until then.
			for deadline := time.Now().Add(docsPollLimit); !masker.matches(c.want, got) && readOnly(command) && time.Now().Before(deadline); {
				time.Sleep(250 * time.Millisecond)
				got, rc, err = sh.run(command)
				require.NoErrorf(t, err, "%s:%d: $ %s", doc, c.line, c.text)
			}
			if transcript != nil {
				fmt.Fprintf(transcript, "%s:%d\n$ %s\n%s\n", doc, c.line, c.text, got)
			}
			if !masker.matches(c.want, got) {
				t.Errorf("%s:%d: the output does not match the document (exit status %d)\n$ %s\n--- documented:\n%s\n--- actual:\n%s\n--- documented, masked:\n%s\n--- actual, masked:\n%s",
					doc, c.line, rc, c.text, strings.Join(c.want, "\n"), got,
					masker.normalize(strings.Join(c.want, "\n")), masker.normalize(got))
			}
		}
	}
	t.Logf("%s: %d commands ran, %d marked skipped, in %s", doc, ran, skipped, time.Since(start).Round(time.Millisecond))
}

var (
	docsCurlGET    = regexp.MustCompile(`^curl -s\s`)
	docsNotGET     = regexp.MustCompile(`\s(-X|-d|-F|-T|--data\S*)\s|\$\(|\s>|\btee\b`)
	docsLevqorRead = regexp.MustCompile(`^levqor (status|stuck|dlq list)( --?[a-z-]+( [^-\s|;&>$]\S*)?)*$`)
)

// readOnly reports whether command is safe to run again: a GET with curl,
// optionally piped to jq, that writes no file, or an operator command that
// only reads (and is not audited).
func readOnly(command string) bool {
	return (docsCurlGET.MatchString(command) && !docsNotGET.MatchString(command)) || docsLevqorRead.MatchString(command)
}

// startDev starts `levqor dev` in work and waits until it is ready.
func startDev(t *testing.T, binDir, work string, vars map[string]string, url string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "dev.log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	t.Cleanup(func() { logFile.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "levqor"), "dev")
	cmd.Dir = work
	cmd.Env = docsEnv(binDir, vars)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			if out, err := os.ReadFile(logPath); err == nil {
				t.Logf("dev mode's log:\n%s", tail(string(out), 60))
			}
		}
	})

	deadline := time.Now().Add(docsDevReady)
	for {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logPath)
			t.Fatalf("levqor dev exited before it was ready (%v):\n%s", err, tail(string(out), 60))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logPath)
			t.Fatalf("levqor dev not ready at %s/readyz after %s:\n%s", url, docsDevReady, tail(string(out), 60))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// docsShell is one bash session that runs a document's commands in order.
type docsShell struct {
	stdin    io.Writer
	lines    chan string
	sentinel string
}

func startShell(t *testing.T, dir string, env []string) *docsShell {
	t.Helper()
	nonce := make([]byte, 8)
	_, err := rand.Read(nonce)
	require.NoError(t, err)

	cmd := exec.Command("bash", "--noprofile", "--norc")
	cmd.Dir = dir
	cmd.Env = env
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = pw, pw
	require.NoError(t, cmd.Start())
	pw.Close()

	sh := &docsShell{stdin: stdin, lines: make(chan string, 1024), sentinel: "__docs_test_" + hex.EncodeToString(nonce)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(sh.lines)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			sh.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		pr.Close()
		wg.Wait()
	})
	_, err = fmt.Fprintf(stdin, "__docs_ret() { return $1; }\n")
	require.NoError(t, err)
	return sh
}

// run runs one command in the session and returns what it printed and its
// exit status; $? after it is the command's status, as in a terminal.
func (sh *docsShell) run(command string) (string, int, error) {
	_, err := fmt.Fprintf(sh.stdin, "{ %s\n} </dev/null 2>&1; __docs_rc=$?; printf '\\n%s %%d\\n' $__docs_rc; __docs_ret $__docs_rc\n", command, sh.sentinel)
	if err != nil {
		return "", 0, err
	}
	var out []string
	timeout := time.After(docsCmdLimit)
	for {
		select {
		case line, ok := <-sh.lines:
			if !ok {
				return strings.Join(out, "\n"), 0, errors.New("the shell exited")
			}
			if rest, found := strings.CutPrefix(line, sh.sentinel+" "); found {
				var rc int
				fmt.Sscan(rest, &rc)
				return strings.TrimRight(strings.Join(out, "\n"), "\n "), rc, nil
			}
			out = append(out, line)
		case <-timeout:
			return strings.Join(out, "\n"), 0, fmt.Errorf("no result after %s; so far:\n%s", docsCmdLimit, strings.Join(out, "\n"))
		}
	}
}

// docsMasker compares documented and actual output by shape. Both sides go
// through the same masks, which replace what differs between two honest runs
// (generated ids, secrets, hashes, times, ports, the scratch directory), then
// whitespace is normalised (the docs fold jq's JSON to read better), and a …
// in the documented side matches anything.
type docsMasker struct {
	subst *strings.Replacer
	masks []docsMask
}

type docsMask struct {
	re   *regexp.Regexp
	repl string
}

func newDocsMasker(work, url string) *docsMasker {
	m := &docsMasker{subst: strings.NewReplacer(work, docsWorkDir, url, docsURL)}
	for _, mk := range []struct{ re, repl string }{
		// Generated ids: Levqor's, Stripe's and the stand-in's.
		{`\b(acc|src|snap|cmd|key|run|tkt|hold|evt|cus|sub|in|cs_test|bps|whsec|lvq_dev|lvq|whe|ntf|usr)_[A-Za-z0-9]{4,}`, "${1}_ID"},
		{`/app/(invite|reset)/[A-Za-z0-9_-]{43}\b`, "/app/$1/TOKEN"},
		// An id cut short by the CLI's elision of long text ("evt_oLo…").
		{`\b(acc|src|snap|cmd|key|run|tkt|hold|evt|cus|sub|in)_[A-Za-z0-9]{1,3}…`, "${1}_ID…"},
		// Hashes and the random part of manual tick ids.
		{`\b[0-9a-f]{64}\b`, "SHA256"},
		{`\bmanual-[0-9a-f]{12}\b`, "manual-HEX"},
		// Times: RFC 3339 and the CLI's "2026-11-26 03:17:00 UTC".
		{`\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?`, "TIME"},
		{`\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\b`, "TIME"},
		// Times in notifications: "6 December 2026, 22:41 UTC".
		{`\b\d{1,2} (January|February|March|April|May|June|July|August|September|October|November|December) \d{4}, \d\d:\d\d UTC\b`, "TIME"},
		// Loopback ports other than the docs' (the Stripe stand-in's is random).
		{`127\.0\.0\.1:\d+`, "127.0.0.1:PORT"},
		// The TICKS stream also holds the every-minute jobs' ticks.
		{`TICKS sequence \d+`, "TICKS sequence N"},
		// Compressed sizes depend on the archive's timestamps.
		{`\d+(\.\d+)? [kMG]?B stored`, "SIZE stored"},
		{`"size_bytes":\s*\d+`, `"size_bytes":SIZE`},
		// Stream sizes and payload lengths follow the generated events.
		{`\b\d+(\.\d+)? (B|KiB|MiB|GiB)\b`, "SIZE"},
		{`Payload \(\d+ bytes\)`, "Payload (N bytes)"},
		// Where a replay went follows every message published before.
		{`\bnow (STRIPE|COMMANDS|TICKS|EVENTS) seq \d+`, "now $1 seq N"},
		// Outbox message ids follow every event emitted before.
		{`\boutbox-\d+\b`, "outbox-N"},
		// Unix times in Stripe payloads, and correlation ids.
		{`\b1[6-9]\d{8}\b`, "UNIX"},
		{`\b[0-9a-f]{24}\b`, "HEX24"},
		// Traces: their ids, how many spans, how long each took.
		{`\b[0-9a-f]{32}\b`, "TRACE_ID"},
		{`\b\d+ spans\b`, "N spans"},
		{`\b\d+\.\dms\b`, "DURATION"},
		// Ages the operator commands print ("16s", "2m17s ago").
		{`\b\d+[smhd](\d+[smhd])*\b`, "AGE"},
		// A message stuck in its retry schedule has failed 3 deliveries,
		// or 4 if the next one came before the command ran.
		{`(evt_ID\s+)[34](\s+AGE\s)`, "${1}N${2}"},
	} {
		m.masks = append(m.masks, docsMask{regexp.MustCompile(mk.re), mk.repl})
	}
	return m
}

var (
	docsSpace   = regexp.MustCompile(`\s+`)
	docsPunctWS = regexp.MustCompile(`\s*([{}\[\],:…])\s*`)
)

func (m *docsMasker) normalize(s string) string {
	s = m.subst.Replace(s)
	for _, mk := range m.masks {
		s = mk.re.ReplaceAllString(s, mk.repl)
	}
	s = docsSpace.ReplaceAllString(strings.TrimSpace(s), " ")
	return docsPunctWS.ReplaceAllString(s, "$1")
}

func (m *docsMasker) matches(want []string, got string) bool {
	w := m.normalize(strings.Join(want, "\n"))
	g := m.normalize(got)
	if !strings.Contains(w, "…") {
		return w == g
	}
	parts := strings.Split(w, "…")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	re := regexp.MustCompile(`^` + strings.Join(parts, ".*?") + `$`)
	return re.MatchString(g)
}
