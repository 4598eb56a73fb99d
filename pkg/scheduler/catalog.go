package scheduler

import (
	"fmt"
	"strings"
)

// Catalog is every periodic job Levqor runs, each with a worker that does
// its work. Deployments override specs or disable jobs with Override.
func Catalog() []Job {
	return []Job{
		{
			Name:        JobHousekeepingPrune,
			Spec:        "0 17 3 * * *",
			TimeZone:    "UTC",
			Description: "prune inbox rows older than the longest stream retention and published outbox rows",
		},
	}
}

// JobHousekeepingPrune names the pruning job.
const JobHousekeepingPrune = "housekeeping.prune"

// Override applies a deployment's overrides to jobs. spec is
// "job=cron spec;job2=off", as in LEVQOR_SCHEDULE: "off" disables a job,
// anything else replaces its spec. Unknown jobs are errors.
func Override(jobs []Job, spec string) ([]Job, error) {
	out := append([]Job(nil), jobs...)
	for _, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		name, val = strings.TrimSpace(name), strings.TrimSpace(val)
		if !ok || name == "" || val == "" {
			return nil, fmt.Errorf("LEVQOR_SCHEDULE: %q: want job=spec or job=off", part)
		}
		found := false
		for i := range out {
			if out[i].Name != name {
				continue
			}
			found = true
			if val == "off" {
				out[i].Disabled = true
			} else {
				out[i].Spec = val
				if _, err := out[i].Schedule(); err != nil {
					return nil, fmt.Errorf("LEVQOR_SCHEDULE: %w", err)
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("LEVQOR_SCHEDULE: no job named %q", name)
		}
	}
	return out, nil
}
