package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/cli"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	require.NoError(t, cli.Run(context.Background(), []string{"version"}, &out, &errOut))
	require.Contains(t, out.String(), "levqor ")
	require.Contains(t, out.String(), "commit ")
	require.Contains(t, out.String(), runtime.Version(), "names the Go version that built it")

	out.Reset()
	require.NoError(t, cli.Run(context.Background(), []string{"version", "--json"}, &out, &errOut))
	var v cli.VersionInfo
	require.NoError(t, json.Unmarshal(out.Bytes(), &v))
	require.Equal(t, runtime.Version(), v.Go)
	require.NotEmpty(t, v.Module)

	err := cli.Run(context.Background(), []string{"version", "--bogus"}, &out, &errOut)
	require.Error(t, err)
	require.Equal(t, 2, cli.ExitCode(err), "a bad flag is a usage error")
}
