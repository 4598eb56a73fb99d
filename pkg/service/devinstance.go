package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/config"
)

// DevLockFile is the file in the data dir that a running dev mode holds
// an exclusive lock on, with its process id inside, so that a second dev
// mode on the same data dir (which would share its SQLite database and
// NATS store) refuses to start.
const DevLockFile = "levqor.lock"

// DevInstanceFile is the file in the data dir that describes the dev mode
// running on it (DevInstance as JSON), so that tools find its URLs. It is
// written once dev mode listens and removed when it stops.
const DevInstanceFile = "dev.json"

// ErrNoDev means FindDev found no dev mode data directory.
var ErrNoDev = errors.New("no dev mode data directory found")

// DevInstance describes a dev mode: the one running on a data dir, as
// written to DevInstanceFile, or as FindDev found it.
type DevInstance struct {
	// PID is the dev mode process.
	PID int `json:"pid"`
	// DataDir is the absolute path of its data dir.
	DataDir string `json:"data_dir"`
	// IngestURL, WebhookURL and NATSURL are where it listens.
	IngestURL  string `json:"ingest_url"`
	WebhookURL string `json:"webhook_url"`
	NATSURL    string `json:"nats_url"`
	// StripeAPIBase is the Stripe API its workers call: the offline
	// stand-in's URL, STRIPE_API_BASE, or empty for api.stripe.com.
	StripeAPIBase string `json:"stripe_api_base,omitempty"`
	// StripeStandIn is true when StripeAPIBase is dev mode's own offline
	// stand-in (package stripedev).
	StripeStandIn bool `json:"stripe_stand_in,omitempty"`
	// SecretsFile is the absolute path of its DevSecretsFile.
	SecretsFile string `json:"secrets_file"`
	// WebhookSecretFromEnv and AdminTokenFromEnv are true when it was
	// started with STRIPE_WEBHOOK_SECRET or LEVQOR_ADMIN_TOKEN: it then
	// uses those rather than the secrets file's.
	WebhookSecretFromEnv bool `json:"webhook_secret_from_env,omitempty"`
	AdminTokenFromEnv    bool `json:"admin_token_from_env,omitempty"`
	// StartedAt is when it started.
	StartedAt time.Time `json:"started_at"`
	// Running reports whether a dev mode holds the data dir's lock now.
	// FindDev sets it; it is not written to the file.
	Running bool `json:"-"`
}

// Secrets reads the instance's secrets without ever creating them (see
// ReadDevSecrets).
func (i DevInstance) Secrets() (DevSecrets, error) { return ReadDevSecrets(i.DataDir) }

// ReadDevSecrets reads the data dir's dev secrets and, unlike
// LoadDevSecrets, never generates them: a tool that signs webhooks or
// calls the admin API for a dev mode must use that dev mode's secrets, and
// a secret it invented would only be refused (400 signature_invalid). The
// error when there are none wraps fs.ErrNotExist and says to start dev
// mode on that data dir first.
func ReadDevSecrets(dataDir string) (DevSecrets, error) {
	path := filepath.Join(dataDir, DevSecretsFile)
	var s DevSecrets
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, fmt.Errorf("%s does not exist: start dev mode on this data directory first (go run ./cmd/levqor dev, LEVQOR_DATA_DIR=%s): %w", path, dataDir, err)
	}
	if err != nil {
		return s, fmt.Errorf("reading %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("reading %s: %w", path, err)
	}
	if s.WebhookSecret == "" || s.AdminToken == "" {
		return s, fmt.Errorf("%s is incomplete: start dev mode on this data directory once to complete it", path)
	}
	return s, nil
}

// FindDev locates dev mode's data directory for a tool run in startDir
// (the working directory when empty): LEVQOR_DATA_DIR when getenv has it
// (relative to startDir), else the nearest .levqor directory in startDir
// or one of its parents, the way git finds .git. Nothing is created. The
// result carries what dev.json says while a dev mode runs there, and
// Running says whether one does; a tool that needs a live dev mode checks
// it. When there is no data directory the error wraps ErrNoDev and says
// where to run the tool.
func FindDev(startDir string, getenv func(string) string) (DevInstance, error) {
	if startDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return DevInstance{}, err
		}
		startDir = wd
	}
	startDir, err := filepath.Abs(startDir)
	if err != nil {
		return DevInstance{}, err
	}
	var dir string
	if env := getenv("LEVQOR_DATA_DIR"); env != "" {
		dir = env
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(startDir, dir)
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return DevInstance{}, fmt.Errorf("%w: LEVQOR_DATA_DIR=%s is not a directory: start dev mode with it first (go run ./cmd/levqor dev)", ErrNoDev, env)
		}
	} else {
		for d := startDir; ; d = filepath.Dir(d) {
			c := filepath.Join(d, config.DataDirDefault)
			if st, err := os.Stat(c); err == nil && st.IsDir() {
				dir = c
				break
			}
			if filepath.Dir(d) == d {
				return DevInstance{}, fmt.Errorf("%w: no %s directory in %s or any directory above it, and LEVQOR_DATA_DIR is not set: "+
					"run this in the directory where you ran `go run ./cmd/levqor dev` (or below it), or set LEVQOR_DATA_DIR to its data directory",
					ErrNoDev, config.DataDirDefault, startDir)
			}
		}
	}
	inst := DevInstance{DataDir: dir}
	if b, err := os.ReadFile(filepath.Join(dir, DevInstanceFile)); err == nil {
		_ = json.Unmarshal(b, &inst)
	}
	inst.DataDir = dir
	if inst.SecretsFile == "" {
		inst.SecretsFile = filepath.Join(dir, DevSecretsFile)
	}
	inst.Running = devLocked(dir)
	if !inst.Running {
		// A dev.json left by a dev mode that was killed describes nothing.
		inst = DevInstance{DataDir: dir, SecretsFile: inst.SecretsFile}
	}
	return inst, nil
}

// devLocked reports whether a dev mode holds dir's lock.
func devLocked(dir string) bool {
	f, err := os.Open(filepath.Join(dir, DevLockFile))
	if err != nil {
		return false
	}
	defer f.Close()
	got, err := tryFlock(f, false)
	if err != nil {
		return false
	}
	if got {
		unflock(f)
		return !flockSupported && readPID(f) != 0
	}
	return true
}

func readPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	return pid
}

// dataDirLock is a held DevLockFile.
type dataDirLock struct{ f *os.File }

// lockDataDir takes dir's DevLockFile for this process, or says which
// process holds it.
func lockDataDir(dir string) (*dataDirLock, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	path := filepath.Join(dir, DevLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("LEVQOR_DATA_DIR: locking %s: %w", path, err)
	}
	got, err := tryFlock(f, true)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("LEVQOR_DATA_DIR: locking %s: %w", path, err)
	}
	if !got {
		holder := "another process"
		if pid := readPID(f); pid != 0 {
			holder = "process " + strconv.Itoa(pid)
		}
		f.Close()
		return nil, fmt.Errorf("LEVQOR_DATA_DIR: data directory %s is in use by another levqor dev (%s holds %s): "+
			"stop that one, or give this one its own directory with LEVQOR_DATA_DIR", abs, holder, DevLockFile)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dataDirLock{f: f}, nil
}

// release gives the lock up. The file stays: removing it would let a
// process that opened it just before take a lock on a file no one else
// sees.
func (l *dataDirLock) release() {
	_ = l.f.Truncate(0)
	unflock(l.f)
	_ = l.f.Close()
}

// writeDevInstance writes inst to the data dir's DevInstanceFile.
func writeDevInstance(inst DevInstance) error {
	b, err := json.MarshalIndent(inst, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(inst.DataDir, DevInstanceFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
