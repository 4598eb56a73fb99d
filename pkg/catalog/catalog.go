// Package catalog is Levqor's product catalog: the 15 Stripe prices Levqor
// sells (four subscription tiers monthly and annual, three Done-For-You
// packages, four add-ons), what each tier entitles an account to, and the
// legacy tier names older plans still carry. It is read from a YAML or JSON
// file and validated before anything starts.
package catalog

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/levqor/levqor/pkg/retention"
	"github.com/levqor/levqor/pkg/strictyaml"
)

// Example is the catalog shipped with Levqor, used by dev mode when
// LEVQOR_CATALOG is not set.
//
//go:embed catalog.example.yaml
var Example []byte

// The product keys Levqor sells. A catalog must define exactly these.
var (
	Tiers    = []string{"starter", "growth", "business", "enterprise"}
	Packages = []string{"dfy_onboarding", "dfy_migration", "dfy_recovery_drill"}
	Addons   = []string{"extra_storage", "extended_retention", "priority_support", "extra_source"}
	// SLAClasses from lowest to highest.
	SLAClasses = []string{"standard", "business", "priority", "enterprise"}
)

// Entitlements are what an account may use.
type Entitlements struct {
	// Tier is the subscription tier, "" when the account has none.
	Tier string `json:"tier,omitempty"`
	// StorageGB is the storage quota.
	StorageGB int `json:"storage_gb"`
	// Sources is the number of backup sources allowed.
	Sources int `json:"sources"`
	// SLA is the support SLA class.
	SLA string `json:"sla,omitempty"`
	// Retention is the default retention policy of the account's sources.
	Retention retention.Policy `json:"retention"`
	// RestoreDrills is true for a tier whose sources are restored on a
	// schedule to prove they can be (backup.restore_drill); the
	// dfy_recovery_drill package entitles an account too.
	RestoreDrills bool `json:"restore_drills,omitempty"`
	// Addons lists the active add-ons with their quantities.
	Addons map[string]int64 `json:"addons,omitempty"`
}

// TierDef defines one tier.
type TierDef struct {
	Prices struct {
		Monthly string `json:"monthly"`
		Annual  string `json:"annual"`
	} `json:"prices"`
	Entitlements Entitlements `json:"entitlements"`
}

// PackageDef defines one Done-For-You package.
type PackageDef struct {
	Price       string `json:"price"`
	Description string `json:"description,omitempty"`
	// Checklist is the DFY team's work for one purchase, in order: the
	// onboarding ticket a paid purchase opens lists it.
	Checklist []string `json:"checklist,omitempty"`
}

// AddonDef defines one add-on; quantity multiplies StorageGB and Sources,
// Retention raises each rule of the tier's policy to at least its value, and
// SLA raises the class to at least its value.
type AddonDef struct {
	Price     string            `json:"price"`
	StorageGB int               `json:"storage_gb,omitempty"`
	Sources   int               `json:"sources,omitempty"`
	Retention *retention.Policy `json:"retention,omitempty"`
	SLA       string            `json:"sla,omitempty"`
}

// File is the catalog file's shape.
type File struct {
	Currency    string                `json:"currency"`
	Tiers       map[string]TierDef    `json:"tiers"`
	Packages    map[string]PackageDef `json:"packages"`
	Addons      map[string]AddonDef   `json:"addons"`
	LegacyTiers map[string]string     `json:"legacy_tiers"`
}

// Kind is what a price buys.
type Kind string

// Price kinds.
const (
	KindTier    Kind = "tier"
	KindPackage Kind = "package"
	KindAddon   Kind = "addon"
)

// PriceRef says what a Stripe price id is in Levqor's terms.
type PriceRef struct {
	Kind Kind
	// Key is the tier, package or add-on key.
	Key string
	// Interval is "month" or "year" for tiers, "" otherwise.
	Interval string
}

// Catalog is a validated catalog.
type Catalog struct {
	file    File
	byPrice map[string]PriceRef
}

// ErrInvalid wraps every validation failure.
var ErrInvalid = errors.New("invalid catalog")

// Load reads a catalog file (.yaml, .yml or .json); path "" loads Example.
func Load(path string) (*Catalog, error) {
	if path == "" {
		return Parse(Example)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("LEVQOR_CATALOG: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("LEVQOR_CATALOG %s: %w", filepath.Base(path), err)
	}
	return c, nil
}

// Parse reads a catalog from YAML or JSON (JSON is YAML) and validates it.
// Unknown keys are errors.
func Parse(data []byte) (*Catalog, error) {
	var f File
	if err := strictyaml.Decode(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return New(f)
}

// New validates f and indexes its prices.
func New(f File) (*Catalog, error) {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if strings.ToLower(f.Currency) != "gbp" {
		bad("currency %q: Levqor sells in gbp", f.Currency)
	}
	c := &Catalog{file: f, byPrice: map[string]PriceRef{}}
	addPrice := func(where, id string, ref PriceRef) {
		if id == "" {
			bad("%s: price id missing", where)
			return
		}
		if !strings.HasPrefix(id, "price_") {
			bad("%s: %q is not a Stripe price id (price_…)", where, id)
		}
		if prev, dup := c.byPrice[id]; dup {
			bad("%s: price %s is already used by %s %s", where, id, prev.Kind, prev.Key)
			return
		}
		c.byPrice[id] = ref
	}
	checkKeys := func(section string, got []string, want []string) {
		for _, k := range got {
			if !slices.Contains(want, k) {
				bad("%s.%s: unknown key (want %s)", section, k, strings.Join(want, ", "))
			}
		}
		for _, k := range want {
			if !slices.Contains(got, k) {
				bad("%s.%s: missing", section, k)
			}
		}
	}
	checkKeys("tiers", keys(f.Tiers), Tiers)
	checkKeys("packages", keys(f.Packages), Packages)
	checkKeys("addons", keys(f.Addons), Addons)
	for _, k := range keys(f.Tiers) {
		t := f.Tiers[k]
		addPrice("tiers."+k+".prices.monthly", t.Prices.Monthly, PriceRef{KindTier, k, "month"})
		addPrice("tiers."+k+".prices.annual", t.Prices.Annual, PriceRef{KindTier, k, "year"})
		e := t.Entitlements
		if e.StorageGB <= 0 || e.Sources <= 0 {
			bad("tiers.%s.entitlements: storage_gb and sources must be positive", k)
		}
		if !slices.Contains(SLAClasses, e.SLA) {
			bad("tiers.%s.entitlements.sla %q: want one of %s", k, e.SLA, strings.Join(SLAClasses, ", "))
		}
		if err := e.Retention.Validate(); err != nil {
			bad("tiers.%s.entitlements.retention: %v", k, err)
		}
		if e.Retention.IsEmpty() {
			bad("tiers.%s.entitlements.retention: a tier needs a default retention policy", k)
		}
	}
	for _, k := range keys(f.Packages) {
		addPrice("packages."+k+".price", f.Packages[k].Price, PriceRef{KindPackage, k, ""})
	}
	for _, k := range keys(f.Addons) {
		a := f.Addons[k]
		addPrice("addons."+k+".price", a.Price, PriceRef{KindAddon, k, ""})
		if a.SLA != "" && !slices.Contains(SLAClasses, a.SLA) {
			bad("addons.%s.sla %q: want one of %s", k, a.SLA, strings.Join(SLAClasses, ", "))
		}
		if a.Retention != nil {
			if err := a.Retention.Validate(); err != nil {
				bad("addons.%s.retention: %v", k, err)
			}
		}
		if a.StorageGB < 0 || a.Sources < 0 {
			bad("addons.%s: storage_gb and sources must not be negative", k)
		}
	}
	for _, old := range keys(f.LegacyTiers) {
		if slices.Contains(Tiers, old) {
			bad("legacy_tiers.%s: a current tier cannot be a legacy name", old)
		}
		if !slices.Contains(Tiers, f.LegacyTiers[old]) {
			bad("legacy_tiers.%s: maps to unknown tier %q", old, f.LegacyTiers[old])
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return c, nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// File returns the catalog's definition.
func (c *Catalog) File() File { return c.file }

// Price looks up a Stripe price id.
func (c *Catalog) Price(id string) (PriceRef, bool) {
	r, ok := c.byPrice[id]
	return r, ok
}

// Package returns the definition of a Done-For-You package key.
func (c *Catalog) Package(key string) (PackageDef, bool) {
	p, ok := c.file.Packages[key]
	return p, ok
}

// PriceID returns the Stripe price of a product key: a package or add-on
// key, or "<tier>_monthly" / "<tier>_annual" (legacy tier names accepted).
func (c *Catalog) PriceID(key string) (string, PriceRef, bool) {
	if p, ok := c.file.Packages[key]; ok {
		return p.Price, c.byPrice[p.Price], true
	}
	if a, ok := c.file.Addons[key]; ok {
		return a.Price, c.byPrice[a.Price], true
	}
	for _, suffix := range []string{"_monthly", "_annual"} {
		if name, ok := strings.CutSuffix(key, suffix); ok {
			if tier, ok := c.Tier(name); ok {
				t := c.file.Tiers[tier]
				id := t.Prices.Monthly
				if suffix == "_annual" {
					id = t.Prices.Annual
				}
				return id, c.byPrice[id], true
			}
		}
	}
	return "", PriceRef{}, false
}

// Tier resolves a tier name, current or legacy, case-insensitively.
func (c *Catalog) Tier(name string) (string, bool) {
	n := strings.ToLower(strings.TrimSpace(name))
	if _, ok := c.file.Tiers[n]; ok {
		return n, true
	}
	if t, ok := c.file.LegacyTiers[n]; ok {
		return t, true
	}
	return "", false
}

// Item is one subscription item as Stripe describes it.
type Item struct {
	PriceID   string
	LookupKey string
	// Metadata of the price (or product); "levqor_tier" or "tier" may name
	// a (legacy) tier.
	Metadata map[string]string
	Quantity int64
}

// Resolve says what an item is: by price id first, then by the price's
// lookup key ("pro_monthly", "extra_storage"), then by a tier named in its
// metadata. ok is false for a price Levqor does not know.
func (c *Catalog) Resolve(it Item) (PriceRef, bool) {
	if r, ok := c.byPrice[it.PriceID]; ok {
		return r, true
	}
	if it.LookupKey != "" {
		key := strings.TrimPrefix(strings.ToLower(it.LookupKey), "levqor_")
		if _, r, ok := c.PriceID(key); ok {
			return r, true
		}
	}
	for _, k := range []string{"levqor_tier", "tier"} {
		if v := it.Metadata[k]; v != "" {
			if t, ok := c.Tier(v); ok {
				return PriceRef{Kind: KindTier, Key: t}, true
			}
		}
	}
	return PriceRef{}, false
}

// Entitlements computes what active subscription items entitle an account
// to: the highest tier among them, raised by each add-on. Items Levqor does
// not know are returned in unknown and change nothing: entitlements never
// change on a guess. Without any tier item the result is empty (no tier).
func (c *Catalog) Entitlements(items []Item) (e Entitlements, unknown []string) {
	tierRank := -1
	var addons []Item
	var addonRefs []PriceRef
	for _, it := range items {
		r, ok := c.Resolve(it)
		if !ok {
			unknown = append(unknown, it.PriceID)
			continue
		}
		switch r.Kind {
		case KindTier:
			if rank := slices.Index(Tiers, r.Key); rank > tierRank {
				tierRank = rank
			}
		case KindAddon:
			addons = append(addons, it)
			addonRefs = append(addonRefs, r)
		}
	}
	if tierRank < 0 {
		return Entitlements{}, unknown
	}
	tier := Tiers[tierRank]
	e = c.file.Tiers[tier].Entitlements
	e.Tier = tier
	for i, it := range addons {
		a := c.file.Addons[addonRefs[i].Key]
		q := it.Quantity
		if q < 1 {
			q = 1
		}
		if e.Addons == nil {
			e.Addons = map[string]int64{}
		}
		e.Addons[addonRefs[i].Key] += q
		e.StorageGB += a.StorageGB * int(q)
		e.Sources += a.Sources * int(q)
		if a.SLA != "" && slices.Index(SLAClasses, a.SLA) > slices.Index(SLAClasses, e.SLA) {
			e.SLA = a.SLA
		}
		if a.Retention != nil {
			e.Retention = raise(e.Retention, *a.Retention)
		}
	}
	return e, unknown
}

// raise returns p with every counting rule at least as generous as in by.
func raise(p, by retention.Policy) retention.Policy {
	up := func(a *int, b int) {
		if *a == retention.Unlimited {
			return
		}
		if b == retention.Unlimited || b > *a {
			*a = b
		}
	}
	up(&p.KeepLast, by.KeepLast)
	up(&p.KeepHourly, by.KeepHourly)
	up(&p.KeepDaily, by.KeepDaily)
	up(&p.KeepWeekly, by.KeepWeekly)
	up(&p.KeepMonthly, by.KeepMonthly)
	up(&p.KeepYearly, by.KeepYearly)
	return p
}
