package cli_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/cli"
)

// TestEveryCommandAnswersHelpAndRefusesABadFlag walks every registered
// command and subcommand: --help prints its usage, its flags and the
// environment it reads on standard output and exits 0; an unknown flag is
// a usage error (exit 2) that names the flag and points at --help.
func TestEveryCommandAnswersHelpAndRefusesABadFlag(t *testing.T) {
	t.Parallel()
	lines := cli.CommandLines()
	require.Greater(t, len(lines), 25, "every command and subcommand is listed")
	opts := cli.Options{Getenv: getenv(nil)}
	for _, line := range lines {
		name := strings.Join(line, " ")
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			err := cli.RunWith(context.Background(), append(append([]string{}, line...), "--help"), &out, &errOut, opts)
			require.NoError(t, err, "--help succeeds")
			require.Equal(t, 0, cli.ExitCode(err))
			help := out.String()
			require.Contains(t, help, "Usage:\n  levqor "+name, "the usage names the command")
			require.Contains(t, help, "Environment", "the help says which environment variables it reads")
			env := help[strings.Index(help, "Environment"):]
			for _, l := range strings.Split(strings.TrimSpace(env), "\n")[1:] {
				require.Greater(t, len(strings.Fields(l)), 1, "every variable is described: %q", l)
			}
			require.Empty(t, errOut.String(), "help goes to standard output")

			out.Reset()
			err = cli.RunWith(context.Background(), append(append([]string{}, line...), "--no-such-flag"), &out, &errOut, opts)
			require.Error(t, err)
			require.Equal(t, 2, cli.ExitCode(err), "a bad flag is a usage error: %v", err)
			require.Contains(t, err.Error(), "no-such-flag")
			require.Contains(t, err.Error(), "levqor "+name+" --help")
		})
	}
}

func TestGroupsAnswerHelpAndRefuseUnknownSubcommands(t *testing.T) {
	t.Parallel()
	opts := cli.Options{Getenv: getenv(nil)}
	for _, g := range []string{"apikey", "backup", "billing", "dlq", "retention", "schedule", "snapshot", "stripe", "webhook"} {
		t.Run(g, func(t *testing.T) {
			var out bytes.Buffer
			err := cli.RunWith(context.Background(), []string{g, "--help"}, &out, &bytes.Buffer{}, opts)
			require.NoError(t, err)
			require.Contains(t, out.String(), "levqor "+g+" ")

			err = cli.RunWith(context.Background(), []string{g, "nosuch"}, &out, &bytes.Buffer{}, opts)
			require.Equal(t, 2, cli.ExitCode(err), "%v", err)
			require.Contains(t, err.Error(), `unknown `+g+` subcommand "nosuch"`)

			err = cli.RunWith(context.Background(), []string{g}, &out, &bytes.Buffer{}, opts)
			require.Equal(t, 2, cli.ExitCode(err), "no subcommand is a usage error: %v", err)
		})
	}
}

func TestMalformedIDsAreCalledMalformed(t *testing.T) {
	t.Parallel()
	opts := cli.Options{Getenv: getenv(nil)}
	for _, args := range [][]string{
		{"backup", "run", "src_nope"},
		{"backup", "pause", "snap_abcdefghijklmnopqrstuvwxyz"},
		{"restore", "snap_x", "--to", "/tmp/x"},
		{"apikey", "revoke", "key_short"},
	} {
		err := cli.RunWith(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}, opts)
		require.Equal(t, 2, cli.ExitCode(err), "%v: %v", args, err)
		require.Contains(t, err.Error(), "is not a well-formed", "%v", args)
	}
}
