package levqor_test

// Checks of the deployment files at the repository root: compose.yaml,
// Dockerfile, .ci/run, scripts/test and the README's quick start. No Docker
// engine is needed: compose.yaml is validated offline with docker-compose, and
// the Dockerfile's build command is run locally with the Go toolchain.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

const (
	composeFile    = "compose.yaml"
	dockerfile     = "Dockerfile"
	ciRun          = ".ci/run"
	testScript     = "scripts/test"
	binDir         = "/usr/local/bin/"
	appImage       = "levqor:local"
	readmeHeadSize = 60 // lines of README.md that must show the quick start
)

var appServices = []string{"ingest", "workers", "scheduler"}

// requireTool returns the path of an external program the test needs. When
// it is missing the test is skipped, or fails when LEVQOR_TEST_REQUIRE_TOOLS=1
// (as scripts/test sets), so that nothing is skipped silently in CI.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s is not on PATH (scripts/test installs it): %v", name, err)
	if os.Getenv("LEVQOR_TEST_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg + "; LEVQOR_TEST_REQUIRE_TOOLS=1 forbids skipping")
	}
	t.Skip(msg)
	return ""
}

// ---------------------------------------------------------------- compose.yaml

// composeRun runs docker-compose on compose.yaml with the process environment
// minus the secrets, plus set; an empty --env-file keeps a developer's .env
// out of the result.
func composeRun(t *testing.T, bin string, set map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	envFile := filepath.Join(t.TempDir(), "empty.env")
	require.NoError(t, os.WriteFile(envFile, nil, 0o600))

	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "STRIPE_WEBHOOK_SECRET" || name == "STRIPE_API_KEY" || name == "COMPOSE_FILE" {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}

	cmd := exec.Command(bin, append([]string{"-f", composeFile, "--env-file", envFile}, args...)...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

var composeSecrets = map[string]string{
	"STRIPE_WEBHOOK_SECRET": "whsec_test_only",
	"STRIPE_API_KEY":        "sk_test_only",
	"LEVQOR_BUS_KEY":        "abababababababababababababababababababababababababababababababab",
	"LEVQOR_MASTER_KEYS":    "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
	// The NATS users' passwords (deploy/nats/auth.conf), each different
	// so that a service handed another's shows.
	"LEVQOR_NATS_INGEST_PASSWORD":    "ingest-pw-5f1c2b",
	"LEVQOR_NATS_WORKERS_PASSWORD":   "workers-pw-93ad70",
	"LEVQOR_NATS_SCHEDULER_PASSWORD": "scheduler-pw-2e8b14",
	"LEVQOR_NATS_OPERATOR_PASSWORD":  "operator-pw-c0ffee",
	"LEVQOR_NATS_ROUTE_PASSWORD":     "route-pw-7d3a91",
}

func TestComposeConfigValid(t *testing.T) {
	bin := requireTool(t, "docker-compose")

	_, stderr, err := composeRun(t, bin, composeSecrets, "config", "-q")
	require.NoError(t, err, "docker-compose config -q rejected %s:\n%s", composeFile, stderr)

	stdout, stderr, err := composeRun(t, bin, composeSecrets, "config")
	require.NoError(t, err, "docker-compose config:\n%s", stderr)
	var cfg struct {
		Services map[string]map[string]any `yaml:"services"`
		Volumes  map[string]any            `yaml:"volumes"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(stdout), &cfg), "parse docker-compose config output:\n%s", stdout)

	for _, name := range append([]string{"nats", "postgres"}, appServices...) {
		require.Contains(t, cfg.Services, name, "service %q missing from %s", name, composeFile)
	}

	t.Run("nats", func(t *testing.T) {
		nats := cfg.Services["nats"]
		require.Contains(t, str(nats["image"]), "nats:")
		require.Equal(t, []string{"-c", "/etc/nats/levqor.conf"}, words(nats["command"]), "nats runs deploy/nats/levqor.conf (JetStream, users)")
		require.NotNil(t, nats["healthcheck"], "nats needs a healthcheck for depends_on: service_healthy")
		requireNamedVolume(t, cfg.Services["nats"], cfg.Volumes, "/data")
	})

	t.Run("postgres", func(t *testing.T) {
		pg := cfg.Services["postgres"]
		require.Contains(t, str(pg["image"]), "postgres:")
		hc, _ := pg["healthcheck"].(map[string]any)
		require.NotNil(t, hc, "postgres needs a healthcheck for depends_on: service_healthy")
		require.Contains(t, strings.Join(words(hc["test"]), " "), "pg_isready")
		requireNamedVolume(t, pg, cfg.Volumes, "/var/lib/postgresql/data")
	})

	built := dockerfileBinaries(t)
	for _, name := range appServices {
		t.Run(name, func(t *testing.T) {
			svc := cfg.Services[name]
			require.Equal(t, appImage, str(svc["image"]), "all app services share one image")
			require.NotNil(t, svc["build"], "%s is built from the Dockerfile", name)
			require.Equal(t, "unless-stopped", str(svc["restart"]))

			cmd := words(svc["command"])
			require.NotEmpty(t, cmd, "%s needs a command", name)
			require.Equal(t, name, path.Base(cmd[0]), "%s runs its own binary", name)
			require.Contains(t, built, path.Base(cmd[0]), "the Dockerfile does not build %s", cmd[0])

			deps, _ := svc["depends_on"].(map[string]any)
			for _, dep := range []string{"nats", "postgres"} {
				d, _ := deps[dep].(map[string]any)
				require.NotNil(t, d, "%s must depend on %s", name, dep)
				require.Equal(t, "service_healthy", str(d["condition"]), "%s must wait for a healthy %s", name, dep)
			}

			env := environment(svc["environment"])
			require.Equal(t, "nats://nats:4222", env["LEVQOR_NATS_URL"])
			require.Contains(t, env["LEVQOR_DATABASE_URL"], "@postgres:5432/")
			require.Equal(t, "json", env["LEVQOR_LOG_FORMAT"])

			hc, _ := svc["healthcheck"].(map[string]any)
			require.NotNil(t, hc, "%s needs a healthcheck", name)
			test := words(hc["test"])
			require.GreaterOrEqual(t, len(test), 2)
			require.Equal(t, "CMD", test[0], "the runtime image has no shell: use the CMD form")
			require.Contains(t, built, path.Base(test[1]), "healthcheck runs %s, which the Dockerfile does not build", test[1])
			require.True(t, strings.HasPrefix(test[1], binDir), "healthcheck binary %s must be an absolute path in %s", test[1], binDir)
		})
	}

	t.Run("ingest-http", func(t *testing.T) {
		env := environment(cfg.Services["ingest"]["environment"])
		require.Equal(t, ":8080", env["LEVQOR_HTTP_ADDR"])
		require.Equal(t, composeSecrets["STRIPE_WEBHOOK_SECRET"], env["STRIPE_WEBHOOK_SECRET"])
		require.NotContains(t, env, "STRIPE_API_KEY", "ingest never calls Stripe; it must not hold the key")
		require.Contains(t, ports(cfg.Services["ingest"]["ports"]), "8080:8080")
	})
	for name, host := range map[string]string{"workers": "9091", "scheduler": "9092"} {
		t.Run(name+"-admin", func(t *testing.T) {
			env := environment(cfg.Services[name]["environment"])
			require.Equal(t, ":9090", env["LEVQOR_ADMIN_ADDR"])
			require.Contains(t, ports(cfg.Services[name]["ports"]), host+":9090")
			if name == "workers" {
				require.Equal(t, composeSecrets["STRIPE_API_KEY"], env["STRIPE_API_KEY"])
			}
		})
	}

	t.Run("bus-key", func(t *testing.T) {
		for _, name := range []string{"ingest", "workers"} {
			require.Equal(t, composeSecrets["LEVQOR_BUS_KEY"], environment(cfg.Services[name]["environment"])["LEVQOR_BUS_KEY"],
				"%s proves or checks Stripe events on the bus", name)
			require.Equal(t, composeSecrets["LEVQOR_MASTER_KEYS"], environment(cfg.Services[name]["environment"])["LEVQOR_MASTER_KEYS"],
				"%s seals or opens the secrets commands carry", name)
		}
		sched := environment(cfg.Services["scheduler"]["environment"])
		require.Equal(t, composeSecrets["LEVQOR_BUS_KEY"], sched["LEVQOR_BUS_KEY"], "the scheduler proves its ticks")
		require.NotContains(t, sched, "LEVQOR_MASTER_KEYS", "the scheduler opens no secret")
	})

	t.Run("workers-mail", func(t *testing.T) {
		set := map[string]string{"LEVQOR_SMTP_HOST": "smtp.example.com", "LEVQOR_SMTP_PASSWORD": "mail-secret", "LEVQOR_PUBLIC_URL": "https://levqor.example.com"}
		maps.Copy(set, composeSecrets)
		stdout, stderr, err := composeRun(t, bin, set, "config")
		require.NoError(t, err, stderr)
		var withMail struct {
			Services map[string]map[string]any `yaml:"services"`
		}
		require.NoError(t, yaml.Unmarshal([]byte(stdout), &withMail))
		// The workers send notifications; ingest the console's
		// invitations and password resets.
		for _, name := range []string{"workers", "workers-cluster", "ingest", "ingest-cluster"} {
			env := environment(withMail.Services[name]["environment"])
			require.Equal(t, "smtp.example.com", env["LEVQOR_SMTP_HOST"], "%s reaches the mail server", name)
			require.Equal(t, "mail-secret", env["LEVQOR_SMTP_PASSWORD"])
			require.Equal(t, "https://levqor.example.com", env["LEVQOR_PUBLIC_URL"])
			require.Equal(t, "587", env["LEVQOR_SMTP_PORT"])
		}
		require.NotContains(t, environment(withMail.Services["scheduler"]["environment"]), "LEVQOR_SMTP_PASSWORD", "the scheduler sends no mail")
	})

	// The secrets have no defaults: starting without them must fail loudly.
	for _, missing := range []string{"STRIPE_WEBHOOK_SECRET", "STRIPE_API_KEY", "LEVQOR_BUS_KEY", "LEVQOR_MASTER_KEYS"} {
		t.Run("without "+missing, func(t *testing.T) {
			set := map[string]string{}
			for k, v := range composeSecrets {
				if k != missing {
					set[k] = v
				}
			}
			_, stderr, err := composeRun(t, bin, set, "config", "-q")
			require.Error(t, err, "docker-compose config must fail without %s", missing)
			require.Contains(t, stderr, missing)
		})
	}
}

// clusterConf is the NATS configuration every node of the cluster profile
// mounts.
const clusterConf = "deploy/nats/cluster.conf"

var clusterNodes = []string{"nats-1", "nats-2", "nats-3"}

// TestComposeClusterProfile checks the `cluster` profile: three JetStream
// nodes routed to each other with `sync_interval: always`, and app services
// that use all three with streams replicated three times.
func TestComposeClusterProfile(t *testing.T) {
	bin := requireTool(t, "docker-compose")

	_, stderr, err := composeRun(t, bin, composeSecrets, "--profile", "cluster", "config", "-q")
	require.NoError(t, err, "docker-compose --profile cluster config -q rejected %s:\n%s", composeFile, stderr)
	stdout, stderr, err := composeRun(t, bin, composeSecrets, "--profile", "cluster", "config")
	require.NoError(t, err, "docker-compose --profile cluster config:\n%s", stderr)
	var cfg struct {
		Services map[string]map[string]any `yaml:"services"`
		Volumes  map[string]any            `yaml:"volumes"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(stdout), &cfg))

	conf, err := os.ReadFile(clusterConf)
	require.NoError(t, err)
	t.Run("config", func(t *testing.T) {
		c := string(conf)
		require.Regexp(t, `(?m)^\s*sync_interval:\s*always\s*$`, c, "billing data needs every write fsynced")
		require.Regexp(t, `(?m)^server_name:\s*\$NATS_SERVER_NAME\s*$`, c, "each node names itself from its environment")
		require.Contains(t, c, "include ./auth.conf", "the nodes require the users of auth.conf")
	})

	for _, n := range clusterNodes {
		t.Run(n, func(t *testing.T) {
			svc := cfg.Services[n]
			require.NotNil(t, svc, "service %s missing from the cluster profile", n)
			require.Contains(t, words(svc["profiles"]), "cluster", "%s belongs to the cluster profile only", n)
			require.Contains(t, str(svc["image"]), "nats:")
			cmd := words(svc["command"])
			require.Len(t, cmd, 4)
			require.Equal(t, []string{"-c", "/etc/nats/cluster.conf", "--routes"}, cmd[:3])
			for _, r := range clusterNodes {
				require.Contains(t, cmd[3], "nats-route://levqor-route:"+composeSecrets["LEVQOR_NATS_ROUTE_PASSWORD"]+"@"+r+":6222", "the routes must list %s, with the route user", r)
			}
			require.Equal(t, n, environment(svc["environment"])["NATS_SERVER_NAME"])
			require.NotNil(t, svc["healthcheck"], "%s needs a healthcheck for depends_on: service_healthy", n)
			requireNamedVolume(t, svc, cfg.Volumes, "/data")
			var mounted bool
			for _, v := range svc["volumes"].([]any) {
				switch v := v.(type) {
				case map[string]any:
					if str(v["target"]) == "/etc/nats" {
						mounted = true
						require.Equal(t, "bind", str(v["type"]))
						require.True(t, strings.HasSuffix(str(v["source"]), "deploy/nats"), "mounts %s", v["source"])
						require.Equal(t, "true", str(v["read_only"]), "the config is mounted read-only")
					}
				case string:
					if parts := strings.Split(v, ":"); len(parts) == 3 && parts[1] == "/etc/nats" {
						mounted = true
						require.True(t, strings.HasSuffix(parts[0], "deploy/nats"), "mounts %s", parts[0])
						require.Equal(t, "ro", parts[2], "the config is mounted read-only")
					}
				}
			}
			require.True(t, mounted, "%s must mount deploy/nats (%s and auth.conf) at /etc/nats", n, clusterConf)
		})
	}

	built := dockerfileBinaries(t)
	for _, name := range appServices {
		t.Run(name+"-cluster", func(t *testing.T) {
			svc := cfg.Services[name+"-cluster"]
			require.NotNil(t, svc, "service %s-cluster missing from the cluster profile", name)
			require.Contains(t, words(svc["profiles"]), "cluster")
			require.Equal(t, appImage, str(svc["image"]))
			cmd := words(svc["command"])
			require.NotEmpty(t, cmd)
			require.Equal(t, name, path.Base(cmd[0]))
			require.Contains(t, built, path.Base(cmd[0]))

			env := environment(svc["environment"])
			require.Equal(t, "3", env["LEVQOR_STREAM_REPLICAS"], "streams are replicated on all three nodes")
			urls := strings.Split(env["LEVQOR_NATS_URL"], ",")
			require.Len(t, urls, 3, "%s knows every node, so it reconnects to a survivor", name)
			deps, _ := svc["depends_on"].(map[string]any)
			for i, n := range clusterNodes {
				require.Equal(t, "nats://"+n+":4222", urls[i])
				d, _ := deps[n].(map[string]any)
				require.NotNil(t, d, "%s must depend on %s", name, n)
				require.Equal(t, "service_healthy", str(d["condition"]))
			}
			require.NotContains(t, deps, "nats", "the cluster services do not use the single node")
			require.Contains(t, env["LEVQOR_DATABASE_URL"], "@postgres:5432/")
		})
	}

	// The default services stay on the single node, outside any profile.
	for _, name := range append([]string{"nats"}, appServices...) {
		require.Empty(t, cfg.Services[name]["profiles"], "%s must start without a profile", name)
	}
	require.Equal(t, "nats://nats:4222", environment(cfg.Services["ingest"]["environment"])["LEVQOR_NATS_URL"])
	require.NotContains(t, environment(cfg.Services["ingest"]["environment"]), "LEVQOR_STREAM_REPLICAS")
}

// TestComposeObservabilityProfile checks the `observability` profile:
// Prometheus scraping the three services with the shipped alert rules,
// Grafana provisioned with the dashboard and that Prometheus, Jaeger
// receiving OTLP; each reachable from the host only, and the services
// sending their traces where OTEL_EXPORTER_OTLP_ENDPOINT says.
func TestComposeObservabilityProfile(t *testing.T) {
	bin := requireTool(t, "docker-compose")
	promtool := requireTool(t, "promtool")
	set := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}
	maps.Copy(set, composeSecrets)
	_, stderr, err := composeRun(t, bin, set, "--profile", "observability", "config", "-q")
	require.NoError(t, err, "docker-compose --profile observability config -q:\n%s", stderr)
	stdout, stderr, err := composeRun(t, bin, set, "--profile", "observability", "config")
	require.NoError(t, err, stderr)
	var cfg struct {
		Services map[string]map[string]any `yaml:"services"`
		Volumes  map[string]any            `yaml:"volumes"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(stdout), &cfg))

	mounts := func(svc map[string]any) map[string]string { // target -> source
		out := map[string]string{}
		for _, v := range svc["volumes"].([]any) {
			switch v := v.(type) {
			case string:
				parts := strings.Split(v, ":")
				out[parts[1]] = parts[0]
			case map[string]any:
				out[str(v["target"])] = str(v["source"])
			}
		}
		return out
	}
	for _, name := range []string{"prometheus", "grafana", "jaeger"} {
		svc := cfg.Services[name]
		require.NotNil(t, svc, "service %s missing from the observability profile", name)
		require.Equal(t, []string{"observability"}, words(svc["profiles"]))
		for _, p := range svc["ports"].([]any) {
			host := str(p)
			if m, ok := p.(map[string]any); ok {
				host = str(m["host_ip"])
			}
			require.Contains(t, host, "127.0.0.1", "%s is published on the host's loopback only", name)
		}
	}

	t.Run("prometheus", func(t *testing.T) {
		svc := cfg.Services["prometheus"]
		require.Contains(t, words(svc["command"]), "--config.file=/etc/prometheus/prometheus.yml")
		m := mounts(svc)
		require.True(t, strings.HasSuffix(m["/etc/prometheus"], "deploy/prometheus"), "the config and the alert rules: %v", m)
		requireNamedVolume(t, svc, cfg.Volumes, "/prometheus")
		require.True(t, strings.HasSuffix(m["/run/levqor-secrets"], "secrets"), "the operator key ingest's /metrics wants: %v", m)
		// The key file exists only in a deployment: check the syntax.
		out, err := exec.Command(promtool, "check", "config", "--syntax-only", "deploy/prometheus/prometheus.yml").CombinedOutput()
		require.NoError(t, err, "promtool check config:\n%s", out)
		conf, err := os.ReadFile("deploy/prometheus/prometheus.yml")
		require.NoError(t, err)
		require.Regexp(t, `(?m)^rule_files:\n  - alerts.yml$`, string(conf), "the alert rules load with it")
		require.Contains(t, string(conf), "credentials_file: /run/levqor-secrets/prometheus-operator-key")
		for name, port := range map[string]string{"ingest": ":8080", "workers": ":9090", "scheduler": ":9090"} {
			require.Contains(t, string(conf), `"`+name+port+`"`, "Prometheus scrapes %s", name)
			addr := environment(cfg.Services[name]["environment"])
			want := port
			if name == "ingest" {
				require.Equal(t, want, addr["LEVQOR_HTTP_ADDR"])
			} else {
				require.Equal(t, want, addr["LEVQOR_ADMIN_ADDR"], "%s serves /metrics there", name)
			}
		}
	})

	t.Run("grafana", func(t *testing.T) {
		svc := cfg.Services["grafana"]
		m := mounts(svc)
		require.True(t, strings.HasSuffix(m["/etc/grafana/provisioning"], "deploy/grafana/provisioning"), "%v", m)
		require.True(t, strings.HasSuffix(m["/var/lib/grafana/dashboards/levqor.json"], "deploy/grafana/levqor.json"), "%v", m)
		ds, err := os.ReadFile("deploy/grafana/provisioning/datasources/prometheus.yml")
		require.NoError(t, err)
		require.Contains(t, string(ds), "url: http://prometheus:9090")
		dash, err := os.ReadFile("deploy/grafana/provisioning/dashboards/levqor.yml")
		require.NoError(t, err)
		require.Contains(t, string(dash), "path: /var/lib/grafana/dashboards")
	})

	t.Run("jaeger", func(t *testing.T) {
		require.Equal(t, "true", environment(cfg.Services["jaeger"]["environment"])["COLLECTOR_OTLP_ENABLED"])
		for _, name := range append(appServices, "ingest-cluster", "workers-cluster", "scheduler-cluster") {
			if svc, ok := cfg.Services[name]; ok {
				require.Equal(t, "http://jaeger:4318", environment(svc["environment"])["OTEL_EXPORTER_OTLP_ENDPOINT"], "%s sends its traces to Jaeger", name)
			}
		}
	})
}

func requireNamedVolume(t *testing.T, svc map[string]any, volumes map[string]any, target string) {
	t.Helper()
	list, _ := svc["volumes"].([]any)
	for _, v := range list {
		var source, dest string
		switch v := v.(type) {
		case string: // "name:/target[:mode]"
			parts := strings.Split(v, ":")
			if len(parts) >= 2 {
				source, dest = parts[0], parts[1]
			}
		case map[string]any:
			if t := str(v["type"]); t != "" && t != "volume" {
				continue
			}
			source, dest = str(v["source"]), str(v["target"])
		}
		if dest != target {
			continue
		}
		require.NotEmpty(t, source, "volume for %s has no source", target)
		require.False(t, strings.HasPrefix(source, "/") || strings.HasPrefix(source, "."),
			"%s must be on a named volume, not the bind mount %s", target, source)
		require.Contains(t, volumes, source, "volume %q is not declared under top-level volumes", source)
		return
	}
	t.Fatalf("no named volume mounted at %s (volumes: %v)", target, list)
}

// str renders a scalar from parsed YAML.
func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// words turns a compose command/healthcheck test (list or string) into words.
func words(v any) []string {
	switch v := v.(type) {
	case []any:
		out := make([]string, len(v))
		for i, w := range v {
			out[i] = str(w)
		}
		return out
	case string:
		return strings.Fields(v)
	}
	return nil
}

// environment turns a compose environment (map or KEY=VALUE list) into a map.
func environment(v any) map[string]string {
	out := map[string]string{}
	switch v := v.(type) {
	case map[string]any:
		for k, val := range v {
			out[k] = str(val)
		}
	case []any:
		for _, kv := range v {
			k, val, _ := strings.Cut(str(kv), "=")
			out[k] = val
		}
	}
	return out
}

// ports turns compose ports (short strings or long-form maps) into
// "published:target" strings.
func ports(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, p := range list {
		switch p := p.(type) {
		case map[string]any:
			out = append(out, str(p["published"])+":"+str(p["target"]))
		default:
			s := str(p)
			if parts := strings.Split(s, ":"); len(parts) == 3 { // ip:published:target
				s = parts[1] + ":" + parts[2]
			}
			out = append(out, strings.TrimSuffix(s, "/tcp"))
		}
	}
	return out
}

// ---------------------------------------------------------------- Dockerfile

// dockerBuild is the `go build` command of the Dockerfile's build stage.
type dockerBuild struct {
	env      []string // KEY=VALUE assignments before go
	flags    []string // everything between "build" and the packages, except -o
	out      string   // the -o directory
	packages []string // ./cmd/... packages
}

// dockerInstructions returns the Dockerfile's instructions, continuation
// lines joined and comments dropped.
func dockerInstructions(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(dockerfile)
	require.NoError(t, err)
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	require.NoError(t, sc.Err())
	return out
}

// shellWords splits a shell command line into words, honoring quotes and
// backslashes, with unquoted ; && || | as separate words.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, w.String())
			w.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			flush()
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated ' in " + s)
			}
			w.WriteString(s[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case c == '"':
			inWord = true
			for i++; ; i++ {
				if i >= len(s) {
					return nil, errors.New(`unterminated " in ` + s)
				}
				if s[i] == '"' {
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case c == ';' || c == '&' || c == '|':
			flush()
			op := string(c)
			if i+1 < len(s) && s[i+1] == c {
				op += string(c)
				i++
			}
			words = append(words, op)
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return words, nil
}

func parseDockerBuild(t *testing.T) dockerBuild {
	t.Helper()
	for _, ins := range dockerInstructions(t) {
		kw, rest, _ := strings.Cut(ins, " ")
		if !strings.EqualFold(kw, "RUN") || !strings.Contains(rest, "go build") {
			continue
		}
		all, err := shellWords(rest)
		require.NoError(t, err)
		// Take the simple command that holds "go build".
		var cmd []string
		for _, w := range append(all, ";") {
			if w == ";" || w == "&&" || w == "||" || w == "|" || w == "&" {
				if i := slices.Index(cmd, "go"); i >= 0 && i+1 < len(cmd) && cmd[i+1] == "build" {
					break
				}
				cmd = nil
				continue
			}
			cmd = append(cmd, w)
		}
		i := slices.Index(cmd, "go")
		require.True(t, i >= 0 && i+1 < len(cmd) && cmd[i+1] == "build", "cannot find go build in %q", rest)
		b := dockerBuild{env: cmd[:i]}
		for _, kv := range b.env {
			require.Contains(t, kv, "=", "unexpected word %q before go build", kv)
		}
		args := cmd[i+2:]
		for j := 0; j < len(args); j++ {
			a := args[j]
			switch {
			case a == "-o" && j+1 < len(args):
				b.out = args[j+1]
				j++
			case strings.HasPrefix(a, "-o="):
				b.out = strings.TrimPrefix(a, "-o=")
			case strings.HasPrefix(a, "-"):
				b.flags = append(b.flags, a)
			default:
				b.packages = append(b.packages, a)
			}
		}
		require.NotEmpty(t, b.out, "go build in the Dockerfile needs -o <dir>/")
		require.NotEmpty(t, b.packages, "go build in the Dockerfile names no packages")
		return b
	}
	t.Fatalf("%s has no RUN ... go build", dockerfile)
	return dockerBuild{}
}

// dockerfileBinaries lists the binaries the Dockerfile builds.
func dockerfileBinaries(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, p := range parseDockerBuild(t).packages {
		out = append(out, path.Base(p))
	}
	return out
}

// cmdPackages lists the directories under cmd/ that hold a Go package.
func cmdPackages(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("cmd")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		files, err := filepath.Glob(filepath.Join("cmd", e.Name(), "*.go"))
		require.NoError(t, err)
		for _, f := range files {
			if !strings.HasSuffix(f, "_test.go") {
				out = append(out, e.Name())
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestDockerfileBuildsEveryCommand(t *testing.T) {
	b := parseDockerBuild(t)
	require.Contains(t, b.env, "CGO_ENABLED=0", "static binaries: they must not depend on the runtime image's libc")
	var pgTools bool
	for _, ins := range dockerInstructions(t) {
		pgTools = pgTools || (strings.HasPrefix(ins, "RUN ") && strings.Contains(ins, "postgresql-client"))
	}
	require.True(t, pgTools, "postgres sources need pg_dump and pg_restore in the image")
	require.True(t, strings.HasSuffix(b.out, "/"), "-o %s must be a directory (ending in /) to build several commands", b.out)

	// The build output is copied into the runtime stage's PATH.
	var copied bool
	for _, ins := range dockerInstructions(t) {
		f := strings.Fields(ins)
		if len(f) >= 4 && strings.EqualFold(f[0], "COPY") && strings.HasPrefix(f[1], "--from=") &&
			strings.TrimSuffix(f[len(f)-2], "*") == b.out && strings.TrimSuffix(f[len(f)-1], "/")+"/" == binDir {
			copied = true
		}
	}
	require.True(t, copied, "the Dockerfile must COPY --from=<build stage> %s %s", b.out, binDir)

	var listed []string
	for _, p := range b.packages {
		require.True(t, strings.HasPrefix(p, "./cmd/") && !strings.Contains(p, "..."),
			"build commands one by one as ./cmd/<name>, not %q", p)
		listed = append(listed, path.Base(p))
	}
	sort.Strings(listed)
	require.Contains(t, listed, "levqor", "the healthchecks run `levqor probe`: the image needs cmd/levqor")
	for _, s := range appServices {
		require.Contains(t, listed, s)
	}

	have := cmdPackages(t)
	if len(have) == 0 {
		t.Skip("cmd/ holds no Go packages yet: nothing to build")
	}
	require.Equal(t, have, listed, "the Dockerfile must build exactly the commands under cmd/")

	if testing.Short() {
		t.Skip("-short: not running the Dockerfile's go build")
	}
	out := t.TempDir()
	args := append([]string{"build"}, b.flags...)
	args = append(args, "-o", out+string(filepath.Separator))
	args = append(args, b.packages...)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), b.env...)
	res, err := cmd.CombinedOutput()
	require.NoError(t, err, "the Dockerfile's build fails here: go %s\n%s", strings.Join(args, " "), res)
	for _, name := range listed {
		fi, err := os.Stat(filepath.Join(out, name))
		require.NoError(t, err, "go build produced no %s", name)
		require.NotZero(t, fi.Mode()&0o111, "%s is not executable", name)
	}
}

// ---------------------------------------------------------------- CI and README

func TestCIRunsTheREADMETestCommand(t *testing.T) {
	for _, f := range []string{ciRun, testScript} {
		fi, err := os.Stat(f)
		require.NoError(t, err)
		require.NotZero(t, fi.Mode()&0o100, "%s must be executable", f)
	}

	ci, err := os.ReadFile(ciRun)
	require.NoError(t, err)
	require.Regexp(t, `^#!/usr/bin/env bash\n`, string(ci))
	require.Regexp(t, `(?m)^set -euo pipefail$`, string(ci))
	require.Regexp(t, `(?m)^exec (\./)?scripts/test\s*$`, string(ci), "%s must run exactly scripts/test", ciRun)

	script, err := os.ReadFile(testScript)
	require.NoError(t, err)
	require.Regexp(t, `(?m)^set -euo pipefail$`, string(script))
	require.Contains(t, string(script), "go test -race", "%s runs the race detector", testScript)

	mk, err := os.ReadFile("Makefile")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^test:.*\n\t(\./)?scripts/test\b`, string(mk), "make test must run scripts/test")

	t.Run("README", func(t *testing.T) {
		data, err := os.ReadFile("README.md")
		if errors.Is(err, os.ErrNotExist) {
			t.Skip("README.md does not exist yet")
		}
		require.NoError(t, err)
		lines := strings.SplitN(string(data), "\n", readmeHeadSize+1)
		head := strings.Join(lines[:min(len(lines), readmeHeadSize)], "\n")
		require.Contains(t, head, "go run ./cmd/levqor dev", "README.md's first %d lines must show how to run it", readmeHeadSize)
		require.Regexp(t, regexp.MustCompile(`(^|[\s`+"`"+`])\./scripts/test\b`), head,
			"README.md's first %d lines must give ./scripts/test, the command CI runs", readmeHeadSize)
	})
}
