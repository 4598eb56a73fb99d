package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/cli"
	"github.com/levqor/levqor/pkg/retention"
	"github.com/levqor/levqor/pkg/store"
)

// TestBackupWalkthrough is the README's backup walkthrough in dev mode:
// an operator adds a directory source, `levqor backup run --wait` backs
// it up with a progress line, the snapshot shows its size, backup.verify
// checks it, and `levqor restore` brings it back elsewhere.
func TestBackupWalkthrough(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"LEVQOR_DATA_DIR":      t.TempDir(),
		"LEVQOR_HTTP_ADDR":     "127.0.0.1:0",
		"LEVQOR_DEV_NATS_ADDR": "127.0.0.1:0",
		"LEVQOR_LOG_LEVEL":     "warn",
		"LEVQOR_SCHEDULE":      "backup.due=off;billing.reconcile=off",
	}
	d := startDev(t, env)
	ctx := context.Background()
	op := apiClient{url: d.info.IngestURL, key: d.info.AdminToken}
	run := func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := cli.RunWith(ctx, append(args, "--url", d.info.IngestURL), &out, &errOut, cli.Options{Getenv: getenv(env)})
		return out.String() + errOut.String(), err
	}

	// An account on the starter tier, as billing leaves it after checkout
	// (the billing walkthrough does that part through Stripe).
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(env["LEVQOR_DATA_DIR"], "levqor.db"), logrus.New())
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	acc := "acc_" + strings.Repeat("b", 26)
	ent, err := json.Marshal(catalog.Entitlements{Tier: "starter", StorageGB: 100, Sources: 2, Retention: retention.Policy{KeepDaily: 7}})
	require.NoError(t, err)
	tier := "starter"
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.InsertAccount(ctx, store.Account{ID: acc, Name: "Ada Backups Ltd", ContactEmail: "ops@ada.example", StripeCustomerID: "cus_ada"}); err != nil {
			return err
		}
		return tx.SetAccountBilling(ctx, store.AccountBilling{ID: acc, Tier: &tier, Status: store.AccountStatusActive, Entitlements: ent})
	}))
	var out string

	data := filepath.Join(t.TempDir(), "site")
	require.NoError(t, os.MkdirAll(filepath.Join(data, "img"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(data, "index.html"), bytes.Repeat([]byte("<p>hello</p>\n"), 10000), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(data, "img", "logo.svg"), []byte("<svg/>"), 0o600))
	var src backups.SourceView
	op.result(t, http.MethodPost, "/v1/sources", map[string]any{"account_id": acc, "name": "website", "kind": "directory",
		"config": map[string]string{"path": data}}, &src)

	// Levqor's own data directory is never a source: a backup of it
	// would copy its database, keys and backups into itself.
	var refused map[string]map[string]string
	require.Equal(t, http.StatusUnprocessableEntity, op.call(t, http.MethodPost, "/v1/sources", map[string]any{"account_id": acc, "name": "itself", "kind": "directory",
		"config": map[string]string{"path": env["LEVQOR_DATA_DIR"]}}, &refused))
	require.Equal(t, "config.path", refused["error"]["field"])
	require.Contains(t, refused["error"]["message"], "overlaps Levqor's own data")

	out, err = run("backup", "run", src.ID, "--wait")
	require.NoError(t, err, out)
	require.Regexp(t, `(?m)^run run_[a-z2-7]{26} queued \(command cmd_`, out)
	m := regexp.MustCompile(`(?m)^succeeded  130\.0 kB read, .* stored  snapshot (snap_[a-z2-7]{26})  sha256 [0-9a-f]{64}$`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	snap := m[1]

	var s store.Snapshot
	require.Equal(t, http.StatusOK, op.call(t, http.MethodGet, "/v1/snapshots/"+snap, nil, &s))
	require.Less(t, s.SizeBytes, int64(10000), "13 kB of repeated lines compress well")

	var sOut, sErr bytes.Buffer
	require.NoError(t, cli.RunWith(ctx, []string{"schedule", "trigger", "backup.verify"}, &sOut, &sErr, cli.Options{
		Getenv: getenv(map[string]string{"LEVQOR_DEV_NATS_ADDR": strings.TrimPrefix(d.info.NATSURL, "nats://"), "LEVQOR_DATA_DIR": env["LEVQOR_DATA_DIR"]})}), sErr.String())
	require.Contains(t, sOut.String(), "published manual tick")
	require.Eventually(t, func() bool {
		op.call(t, http.MethodGet, "/v1/snapshots/"+snap, nil, &s)
		return s.Integrity == store.SnapshotVerified
	}, 20*time.Second, 100*time.Millisecond)

	target := filepath.Join(t.TempDir(), "site-restored")
	out, err = run("restore", snap, "--to", target)
	require.NoError(t, err, out)
	require.Contains(t, out, "restored "+snap+" to "+target+": 2 files, 130.0 kB, every checksum verified")
	b, err := os.ReadFile(filepath.Join(target, "index.html"))
	require.NoError(t, err)
	require.Len(t, b, 130000)

	out, err = run("restore", snap, "--to", target)
	require.Error(t, err)
	require.Contains(t, err.Error(), "target_not_empty (target_path)")
	_, err = run("restore", snap, "--to", "/etc/levqor-restore")
	require.ErrorContains(t, err, "LEVQOR_BACKUP_PATHS")
	require.False(t, strings.Contains(out, "panic"))

	// Browse the snapshot, then restore one file of it.
	out, err = run("snapshot", "ls", snap)
	require.NoError(t, err, out)
	require.Regexp(t, `^drwxr-xr-x  +-  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  img/\n-rw-r--r--  +130\.0 kB  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  index\.html\n$`, out)
	out, err = run("snapshot", "ls", snap, "img")
	require.NoError(t, err, out)
	require.Regexp(t, `^-rw-------  +6 B  .*  logo\.svg\n$`, out)
	_, err = run("snapshot", "ls", snap, "css")
	require.ErrorContains(t, err, "404 not_found (path)")
	_, err = run("snapshot", "ls", snap, "a", "b")
	require.ErrorContains(t, err, "give the snapshot id and, optionally, a directory")

	one := filepath.Join(t.TempDir(), "logo-only")
	out, err = run("restore", snap, "--to", one, "--include", "img/logo.svg")
	require.NoError(t, err, out)
	require.Contains(t, out, "restored "+snap+" (img/logo.svg) to "+one+": 1 files, 6 B, every checksum verified")
	b, err = os.ReadFile(filepath.Join(one, "img", "logo.svg"))
	require.NoError(t, err)
	require.Equal(t, "<svg/>", string(b))
	_, err = os.Stat(filepath.Join(one, "index.html"))
	require.ErrorIs(t, err, os.ErrNotExist, "only the included path is restored")
	_, err = run("restore", snap, "--to", filepath.Join(t.TempDir(), "x"), "--include", "img/nope.svg")
	require.ErrorContains(t, err, "422 path_not_found (include)")
	_, err = run("restore", snap, "--dsn", "postgres://x@127.0.0.1/db", "--include", "img")
	require.ErrorContains(t, err, "--include picks paths of a directory snapshot")

	// levqor check reads the repository with dev mode's master key and
	// blob directory; a damaged pack is found, named, and marks the
	// snapshot corrupt, with exit code 3.
	check := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := cli.RunWith(ctx, append([]string{"check"}, args...), &out, &errOut, cli.Options{Getenv: getenv(env)})
		return out.String() + errOut.String(), err
	}
	out, err = check()
	require.NoError(t, err, out)
	require.Regexp(t, `^read (\d+) of \d+ packs \(all\), .*B, \d+ chunks: every MAC checked\n`, out)
	require.Contains(t, out, "missing packs 0, corrupt packs 0, damaged indexes 0, packs no index names 0\n1 snapshots of 1 accounts: 1 verified, 0 corrupt\n")
	packs, err := filepath.Glob(filepath.Join(env["LEVQOR_DATA_DIR"], "blobs", acc, "repo", "packs", "*"))
	require.NoError(t, err)
	require.Len(t, packs, 1, "a small tree fits one pack")
	pb, err := os.ReadFile(packs[0])
	require.NoError(t, err)
	pb[10] ^= 1
	require.NoError(t, os.WriteFile(packs[0], pb, 0o600))
	out, err = check("--account", acc)
	require.Error(t, err)
	require.Equal(t, 3, cli.ExitCode(err), "damage found is exit code 3")
	require.Contains(t, out, "missing packs 0, corrupt packs 1, damaged indexes 0")
	require.Regexp(t, `(?m)^  `+snap+` \(src_[a-z2-7]{26}, `+acc+`\): check: img/logo\.svg: pack [0-9a-f]{64} does not hash to its name: damaged or altered$`, out)
	require.Equal(t, http.StatusOK, op.call(t, http.MethodGet, "/v1/snapshots/"+snap, nil, &s))
	require.Equal(t, store.SnapshotCorrupt, s.Integrity)
	_, err = check("--read-data-subset", "0/7")
	require.ErrorContains(t, err, `--read-data-subset: "0/7": give all, a percentage`)

	// An index that does not open is rebuilt from the packs' headers.
	idx, err := filepath.Glob(filepath.Join(env["LEVQOR_DATA_DIR"], "blobs", acc, "repo", "index", "*"))
	require.NoError(t, err)
	require.NotEmpty(t, idx)
	require.NoError(t, os.WriteFile(idx[0], []byte("damaged"), 0o600))
	require.NoError(t, os.WriteFile(packs[0], append(pb[:10:10], append([]byte{pb[10] ^ 1}, pb[11:]...)...), 0o600)) // the pack as it was
	out, err = check("--account", acc)
	require.Error(t, err)
	require.Contains(t, out, "damaged indexes 1")
	_, err = check("--rebuild-index")
	require.ErrorContains(t, err, "--rebuild-index needs --account")
	out, err = check("--account", acc, "--rebuild-index")
	require.Equal(t, 3, cli.ExitCode(err), "the snapshot found corrupt before stays so: %s", out)
	require.Contains(t, out, "index rebuilt from 1 packs (2 chunks; 0 failing their check left out), 1 damaged indexes replaced, 0 packs unreadable\n")
	require.Contains(t, out, "read 1 of 1 packs (all)")
	require.Contains(t, out, "missing packs 0, corrupt packs 0, damaged indexes 0, packs no index names 0\n")
}
