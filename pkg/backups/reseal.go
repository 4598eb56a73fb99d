package backups

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/store"
)

// ResealReport says what ResealSources did.
type ResealReport struct {
	// Resealed DSNs were sealed under another key than the first of
	// LEVQOR_MASTER_KEYS, and are now under the first; Sealed were in
	// clear (stored before sealing began) and are now sealed; Current
	// were already under the first key.
	Resealed, Sealed, Current int
	// DataKeysRewrapped are accounts' data keys wrapped under another key
	// than the first and now under the first; DataKeysCurrent were under
	// it already. The data they seal is not rewritten: only the wrapping
	// changes.
	DataKeysRewrapped, DataKeysCurrent int
}

// RewrapDataKeys wraps every account's data key under the first of the
// sealer's keys, adding to rep: after it, an older master key opens
// nothing Levqor keeps of the accounts' backups. A key changed meanwhile
// (destroyed by an erasure) is left as it is.
func RewrapDataKeys(ctx context.Context, st *store.Store, sealer *keys.Sealer, rep *ResealReport) error {
	if sealer == nil {
		return errors.New("LEVQOR_MASTER_KEYS: required to wrap the accounts' data keys")
	}
	after := ""
	for {
		page, err := st.AccountDataKeys(ctx, after, 200)
		if err != nil {
			return err
		}
		for _, k := range page {
			raw, err := unwrapDataKey(sealer, k.AccountID, k.Wrapped)
			if err != nil {
				return err
			}
			wrapped, err := sealer.Seal(hex.EncodeToString(raw), dataKeyShown(k.AccountID))
			if err != nil {
				return err
			}
			if wrapped == k.Wrapped {
				rep.DataKeysCurrent++
				continue
			}
			ok, err := st.RewrapAccountDataKey(ctx, k.AccountID, k.Wrapped, wrapped, time.Now())
			if err != nil {
				return err
			}
			if ok {
				rep.DataKeysRewrapped++
			}
		}
		if len(page) < 200 {
			return nil
		}
		after = page[len(page)-1].AccountID
	}
}

// ResealSources seals every postgres source's DSN under the first of the
// sealer's keys: those under an older key (so that the old key can be
// retired) and those stored in clear before sealing began. Each source is
// changed in its own transaction, holding its lock, so that a config set
// meanwhile is not overwritten. Commands keep their payloads: a worker
// runs a command only as recorded, and a recorded command is pruned in
// time.
func (w *Worker) ResealSources(ctx context.Context, sealer *keys.Sealer) (ResealReport, error) {
	var rep ResealReport
	if sealer == nil {
		return rep, errors.New("LEVQOR_MASTER_KEYS: required to seal the sources' DSNs")
	}
	var after *store.SourceCursor
	for {
		page, err := w.Store.ListSources(ctx, store.ListSourcesParams{Limit: 200, After: after})
		if err != nil {
			return rep, err
		}
		for _, src := range page {
			if err := w.reseal(ctx, sealer, src.ID, &rep); err != nil {
				return rep, fmt.Errorf("source %s: %w", src.ID, err)
			}
		}
		if len(page) < 200 {
			return rep, nil
		}
		last := page[len(page)-1]
		after = &store.SourceCursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
}

func (w *Worker) reseal(ctx context.Context, sealer *keys.Sealer, id string, rep *ResealReport) error {
	return w.Store.InTx(ctx, func(tx *store.Tx) error {
		src, err := tx.LockSource(ctx, id)
		if err != nil {
			return err
		}
		if len(src.Config) == 0 {
			return nil
		}
		var cfg map[string]any
		if err := json.Unmarshal(src.Config, &cfg); err != nil {
			return fmt.Errorf("reading its config: %w", err)
		}
		v, ok := cfg["dsn"].(string)
		if !ok || v == "" {
			return nil
		}
		secret, err := sealer.Open(v)
		if err != nil {
			return err
		}
		sealed, err := sealer.Seal(secret, RedactDSN(secret))
		if err != nil {
			return err
		}
		switch {
		case sealed == v:
			rep.Current++
			return nil
		case keys.IsSealed(v):
			rep.Resealed++
		default:
			rep.Sealed++
		}
		cfg["dsn"] = sealed
		b, err := json.Marshal(cfg)
		if err != nil {
			return err
		}
		return tx.SetSourceConfig(ctx, src.ID, b, time.Now())
	})
}
