package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/scheduler"
)

func init() {
	registerGroup("consumer", "pause | resume <name>: stop and restart a consumer's fetching everywhere, losing nothing",
		"consumer pause <name> [--reason text]\nconsumer resume <name>",
		map[string]commandFunc{"pause": pauseCommand("consumer", true), "resume": pauseCommand("consumer", false)})
}

// pauseSynopsis is each pause command's usage line.
var pauseSynopsis = map[string]string{
	"schedule pause":  "schedule pause <job> [--reason text] [--actor name]",
	"schedule resume": "schedule resume <job> [--actor name]",
	"consumer pause":  "consumer pause <name> [--reason text] [--actor name]",
	"consumer resume": "consumer resume <name> [--actor name]",
}

var pauseAbout = map[string]string{
	"schedule": "While a job is paused, the scheduler publishes none of its slots (they are skipped, not queued: " +
		"`levqor schedule backfill` brings back the ones that matter after resuming). Every scheduler replica sees the change within moments.",
	"consumer": "While a consumer is paused, no worker fetches from it: what is in flight finishes, and new messages wait in the stream, " +
		"lost by no one, until it is resumed. Every worker replica sees the change within moments; `levqor status` lists the pauses.",
}

// pauseCommand is `levqor <what> pause|resume <name>`: what is "schedule"
// (a job) or "consumer".
func pauseCommand(what string, pause bool) commandFunc {
	verb := map[bool]string{true: "pause", false: "resume"}[pause]
	name := what + " " + verb
	return func(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
		fs := newFlags(name, pauseSynopsis[name], stdout, envOf(envOps, []string{"USER"})...).describe(pauseAbout[what])
		actor := addActorFlag(fs, opts)
		reason := new(string)
		if pause {
			reason = fs.String("reason", "", "why, for other operators (levqor status, levqor audit)")
		}
		pos, err := fs.parse(args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usageError("%s: name one %s", pauseSynopsis[name], map[string]string{"schedule": "job", "consumer": "consumer"}[what])
		}
		s, err := openOps(ctx, opts, stderr, *actor)
		if err != nil {
			return err
		}
		defer s.close()
		var changed bool
		if what == "schedule" {
			cfg, err := config.FromEnv(opts.Getenv)
			if err != nil {
				return err
			}
			jobs, _, err := scheduler.Override(scheduler.Catalog(), cfg.Schedule)
			if err != nil {
				return err
			}
			changed, err = s.ops.SetJobPaused(ctx, jobs, pos[0], pause, *actor, *reason)
			if err != nil {
				return opsError(err)
			}
		} else if changed, err = s.ops.SetConsumerPaused(ctx, pos[0], pause, *actor, *reason); err != nil {
			return opsError(err)
		}
		past := map[bool]string{true: "paused", false: "resumed"}[pause]
		if !changed {
			fmt.Fprintf(stdout, "%s was %s already; nothing changed\n", pos[0], map[bool]string{true: "paused", false: "not paused"}[pause])
			return nil
		}
		fmt.Fprintf(stdout, "%s %s\n", pos[0], past)
		return nil
	}
}
