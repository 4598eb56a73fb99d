package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/store"
)

func init() {
	registerGroup("keys", "rotate: seal every stored secret under the first of LEVQOR_MASTER_KEYS",
		"keys rotate [--json]", map[string]commandFunc{"rotate": runKeysRotate})
}

const keysAbout = "LEVQOR_MASTER_KEYS seal the secrets Levqor keeps (a postgres source's DSN, each account's data key, under which its backups are encrypted): the first seals, every one opens. " +
	"To rotate, put a new key first and keep the old ones after it, restart ingest and the workers, then run this: " +
	"it seals every source's DSN under the new key (and those stored in clear before sealing began) and wraps every account's data key under it, without rewriting any backup. " +
	"Then the old key can be dropped once the commands recorded before the rotation are pruned. Audited."

func runKeysRotate(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("keys rotate", "keys rotate [--json]", stdout, envOf(envStore, []string{"LEVQOR_MASTER_KEYS", "USER"})...).describe(keysAbout)
	asJSON := fs.Bool("json", false, "print JSON")
	actor := addActorFlag(fs, opts)
	if err := fs.parseNone(args); err != nil {
		return err
	}
	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return err
	}
	if cfg.MasterKeys == "" {
		return errors.New("LEVQOR_MASTER_KEYS: required: the new key first, then the old ones, comma-separated")
	}
	sealer, err := keys.ParseMasterKeys(cfg.MasterKeys)
	if err != nil {
		return err
	}
	st, err := openKeyStore(ctx, stderr, opts)
	if err != nil {
		return err
	}
	defer st.Close()
	rep, err := (&backups.Worker{Store: st}).ResealSources(ctx, sealer)
	if err == nil {
		err = backups.RewrapDataKeys(ctx, st, sealer, &rep)
	}
	if err != nil {
		return schemaHint(err)
	}
	counts, _ := json.Marshal(rep)
	if _, err := st.RecordAudit(ctx, store.AuditEntry{Actor: *actor, Action: "keys.rotate", Outcome: store.AuditOutcomeOK, Counts: counts}); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	fmt.Fprintf(stdout, "sources' DSNs: %d sealed again under the first key, %d sealed for the first time, %d already under it\n",
		rep.Resealed, rep.Sealed, rep.Current)
	fmt.Fprintf(stdout, "accounts' data keys: %d wrapped again under the first key, %d already under it (no backup is rewritten)\n",
		rep.DataKeysRewrapped, rep.DataKeysCurrent)
	return nil
}
