package service

import (
	"errors"

	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/support/triage"
)

// Files are the operator-edited files a process runs with, loaded once at
// start: the product catalog (LEVQOR_CATALOG), the support rules
// (LEVQOR_SUPPORT_RULES) and the notify rules (LEVQOR_NOTIFY_RULES). A
// field is nil when the role does not use it.
type Files struct {
	Catalog     *catalog.Catalog
	Rules       *triage.Rules
	NotifyRules *notify.Rules
}

// Check validates cfg for role (config.ValidateFor) and loads the files
// the role uses, so that a process refuses to start on a bad catalog or
// rules file, with an error naming the variable, the file and the entry,
// and then runs with exactly what it checked: nothing is loaded twice.
func Check(cfg config.Config, role config.Role) (Files, error) {
	var f Files
	errs := []error{cfg.ValidateFor(role)}
	if role == config.RoleIngest || role == config.RoleWorkers || role == config.RoleDev {
		c, err := catalog.Load(cfg.Catalog)
		errs = append(errs, err)
		f.Catalog = c
	}
	if role == config.RoleWorkers || role == config.RoleDev {
		r, err := triage.Load(cfg.SupportRules)
		errs = append(errs, err)
		f.Rules = r
		n, err := notify.Load(cfg.NotifyRules)
		errs = append(errs, err)
		f.NotifyRules = n
	}
	if err := errors.Join(errs...); err != nil {
		return Files{}, err
	}
	return f, nil
}
