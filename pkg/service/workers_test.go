package service_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/service"
)

func TestResolveWorkersAcceptsFormerNamesWithAWarning(t *testing.T) {
	t.Parallel()
	names, warnings, err := service.ResolveWorkers([]string{"billing", "retention", "backups"})
	require.NoError(t, err)
	require.Equal(t, []string{"billing", "backups"}, names, "the former name is the same worker")
	require.Equal(t, []string{`LEVQOR_WORKERS: worker "retention" is now called "backups"; write backups (the old name is accepted until the next release)`}, warnings)

	all, warnings, err := service.ResolveWorkers([]string{"all"})
	require.NoError(t, err)
	require.Equal(t, service.Workers, all)
	require.Empty(t, warnings)

	_, _, err = service.ResolveWorkers([]string{"backup"})
	require.ErrorContains(t, err, `LEVQOR_WORKERS: unknown worker "backup" (known: billing, housekeeping, accounts, backups, support, notify, or all)`)
}
