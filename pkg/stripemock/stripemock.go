// Package stripemock runs Stripe's official API mock, stripe-mock, for
// tests: code that calls the Stripe API is tested against a server that
// validates every request against Stripe's OpenAPI specification and answers
// with realistic objects, instead of against a hand-written fake.
//
// stripe-mock is stateless: it echoes request parameters into a fixture
// object, so ids (cus_…) repeat across calls and nothing is remembered.
package stripemock

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// BinEnv names the stripe-mock binary; without it, stripe-mock is looked up
// on PATH.
const BinEnv = "STRIPE_MOCK_BIN"

// RequireToolsEnv, when set to 1, turns a missing binary from a skip into a
// failure, so that CI cannot go green without running these tests.
const RequireToolsEnv = "LEVQOR_TEST_REQUIRE_TOOLS"

// TestKey is an API key stripe-mock accepts: sk_test_ followed by letters
// and digits only (it refuses sk_test_a_b as not "valid looking").
const TestKey = "sk_test_levqorstripemock"

// startTimeout bounds how long stripe-mock may take to load its
// specification and answer.
const startTimeout = 30 * time.Second

// Start runs stripe-mock on free loopback ports and returns its HTTP base
// URL, e.g. http://127.0.0.1:40321, once it answers. The process is killed
// in t.Cleanup. Without the binary the test is skipped, or fails when
// LEVQOR_TEST_REQUIRE_TOOLS=1.
func Start(t testing.TB) string {
	t.Helper()
	bin := binary(t)
	ctx, cancel := context.WithCancel(context.Background())
	// Empty ports let the system choose, so parallel tests never collide;
	// HTTPS is bound too because stripe-mock otherwise takes :12112.
	cmd := exec.CommandContext(ctx, bin, "-http-addr", "127.0.0.1:", "-https-addr", "127.0.0.1:")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatalf("stripe-mock: %v", err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
	})

	addr := make(chan string, 1)
	var output strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, "Listening for HTTP at address: "); ok {
				addr <- strings.TrimSpace(a)
				break
			}
			output.WriteString(line + "\n")
		}
		_, _ = io.Copy(io.Discard, stdout) // keep the pipe drained
	}()

	var url string
	select {
	case a := <-addr:
		url = "http://" + a
	case <-exited:
		t.Fatalf("stripe-mock exited before listening:\n%s", output.String())
	case <-time.After(startTimeout):
		t.Fatalf("stripe-mock did not report its address within %s", startTimeout)
	}
	waitAnswering(t, url)
	return url
}

// binary finds stripe-mock, or skips or fails the test.
func binary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv(BinEnv); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s=%s: %v", BinEnv, bin, err)
		}
		return bin
	}
	bin, err := exec.LookPath("stripe-mock")
	if err == nil {
		return bin
	}
	msg := fmt.Sprintf("stripe-mock not found: set %s or put it on PATH (go install github.com/stripe/stripe-mock@v0.203.0)", BinEnv)
	if os.Getenv(RequireToolsEnv) == "1" {
		t.Fatalf("%s; %s=1 forbids skipping", msg, RequireToolsEnv)
	}
	t.Skip(msg)
	return ""
}

// waitAnswering polls until stripe-mock serves an authenticated request.
func waitAnswering(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		req, err := http.NewRequest(http.MethodGet, url+"/v1/customers?limit=1", nil)
		if err != nil {
			t.Fatalf("stripe-mock: %v", err)
		}
		req.SetBasicAuth(TestKey, "")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Errorf("status %d", resp.StatusCode)
		} else {
			last = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("stripe-mock at %s did not answer within %s: %v", url, startTimeout, last)
}
