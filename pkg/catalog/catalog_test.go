package catalog_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/catalog"
)

func TestExampleIsValidAndHasFifteenPrices(t *testing.T) {
	t.Parallel()
	c, err := catalog.Load("")
	require.NoError(t, err)
	n := 0
	for _, tier := range catalog.Tiers {
		for _, iv := range []string{"_monthly", "_annual"} {
			id, ref, ok := c.PriceID(tier + iv)
			require.True(t, ok, tier+iv)
			require.Equal(t, catalog.KindTier, ref.Kind)
			require.Equal(t, tier, ref.Key)
			require.NotEmpty(t, id)
			n++
		}
	}
	for _, k := range append(append([]string{}, catalog.Packages...), catalog.Addons...) {
		_, _, ok := c.PriceID(k)
		require.True(t, ok, k)
		n++
	}
	require.Equal(t, 15, n)
}

func TestLegacyTierNames(t *testing.T) {
	t.Parallel()
	c, err := catalog.Load("")
	require.NoError(t, err)
	for old, want := range map[string]string{"basic": "starter", "pro": "growth", "premium": "business", "team": "business", "Growth": "growth"} {
		got, ok := c.Tier(old)
		require.True(t, ok, old)
		require.Equal(t, want, got)
	}
	_, ok := c.Tier("platinum")
	require.False(t, ok)
	// A legacy lookup key on a price Levqor no longer lists.
	ref, ok := c.Resolve(catalog.Item{PriceID: "price_1OldPro", LookupKey: "pro_monthly"})
	require.True(t, ok)
	require.Equal(t, "growth", ref.Key)
	ref, ok = c.Resolve(catalog.Item{PriceID: "price_1OldTeam", Metadata: map[string]string{"levqor_tier": "team"}})
	require.True(t, ok)
	require.Equal(t, "business", ref.Key)
}

func TestEntitlementsFromItems(t *testing.T) {
	t.Parallel()
	c, err := catalog.Load("")
	require.NoError(t, err)
	growth, _, _ := c.PriceID("growth_monthly")
	storage, _, _ := c.PriceID("extra_storage")
	priority, _, _ := c.PriceID("priority_support")
	longer, _, _ := c.PriceID("extended_retention")
	e, unknown := c.Entitlements([]catalog.Item{
		{PriceID: growth, Quantity: 1},
		{PriceID: storage, Quantity: 3},
		{PriceID: priority, Quantity: 1},
		{PriceID: longer, Quantity: 1},
		{PriceID: "price_mystery", Quantity: 1},
	})
	require.Equal(t, []string{"price_mystery"}, unknown, "unknown prices are reported, not guessed")
	require.Equal(t, "growth", e.Tier)
	require.Equal(t, 500+3*100, e.StorageGB)
	require.Equal(t, 5, e.Sources)
	require.Equal(t, "priority", e.SLA)
	require.Equal(t, 36, e.Retention.KeepMonthly, "extended retention raises monthly")
	require.Equal(t, 14, e.Retention.KeepDaily, "and keeps the tier's other rules")
	require.Equal(t, int64(3), e.Addons["extra_storage"])

	none, unknown := c.Entitlements([]catalog.Item{{PriceID: storage, Quantity: 1}})
	require.Empty(t, none.Tier, "add-ons without a tier entitle nothing")
	require.Empty(t, unknown)

	two, _ := c.Entitlements([]catalog.Item{{PriceID: growth}, {LookupKey: "enterprise_annual"}})
	require.Equal(t, "enterprise", two.Tier, "the highest tier wins")
}

func TestValidationNamesTheProblem(t *testing.T) {
	t.Parallel()
	base := string(catalog.Example)
	for name, tc := range map[string]struct {
		edit func(string) string
		want string
	}{
		"UnknownTier": {func(s string) string {
			return strings.Replace(s, "tiers:\n", "tiers:\n  platinum:\n    prices: {monthly: price_p_m, annual: price_p_a}\n    entitlements: {storage_gb: 1, sources: 1, sla: standard, retention: {keep_last: 1}}\n", 1)
		}, "tiers.platinum: unknown key"},
		"MissingTier": {func(s string) string {
			i := strings.Index(s, "  enterprise:")
			j := strings.Index(s, "# Done-For-You")
			return s[:i] + s[j:]
		}, "tiers.enterprise: missing"},
		"DuplicatePrice": {func(s string) string {
			return strings.Replace(s, "price_levqor_extra_source", "price_levqor_extra_storage", 1)
		}, "price price_levqor_extra_storage is already used"},
		"UnknownField": {func(s string) string {
			return strings.Replace(s, "currency: gbp", "currency: gbp\ncolour: blue", 1)
		}, `unknown field "colour"`},
		"BadSLA": {func(s string) string {
			return strings.Replace(s, "sla: standard", "sla: gold", 1)
		}, `sla "gold"`},
		"BadLegacy": {func(s string) string {
			return strings.Replace(s, "basic: starter", "basic: diamond", 1)
		}, "legacy_tiers.basic"},
		"BadRetention": {func(s string) string {
			return strings.Replace(s, "keep_daily: 7,", "keep_daily: -5,", 1)
		}, "keep_daily"},
		"Currency": {func(s string) string { return strings.Replace(s, "currency: gbp", "currency: usd", 1) }, "gbp"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := catalog.Parse([]byte(tc.edit(base)))
			require.ErrorIs(t, err, catalog.ErrInvalid)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestLoadNamesTheVariable(t *testing.T) {
	t.Parallel()
	_, err := catalog.Load(filepath.Join(t.TempDir(), "missing.yaml"))
	require.ErrorContains(t, err, "LEVQOR_CATALOG")
	p := filepath.Join(t.TempDir(), "c.json")
	require.NoError(t, os.WriteFile(p, []byte(`{"currency":"gbp"}`), 0o600))
	_, err = catalog.Load(p)
	require.ErrorContains(t, err, "LEVQOR_CATALOG c.json")
	require.ErrorContains(t, err, "tiers.starter: missing")
}
