package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

// scaleRE is the heroku CLI's ps:scale argument syntax.
var scaleRE = regexp.MustCompile(`^([\w-]+)([=+-]\d+)(?::([\w-]+))?$`)

// parseScaleArgs turns "web=2:Standard-2X", "worker+1" and "clock-1" into
// formation updates; relative quantities are left for the server to apply
// to the current quantity.
func parseScaleArgs(args []string) ([]api.FormationUpdate, error) {
	var updates []api.FormationUpdate
	seen := map[string]bool{}
	for _, arg := range args {
		m := scaleRE.FindStringSubmatch(arg)
		if m == nil {
			return nil, fmt.Errorf("invalid argument %q: use TYPE=QTY[:SIZE], TYPE+N or TYPE-N (e.g. web=2:Basic worker+1)", arg)
		}
		typ, op, size := m[1], m[2][0], m[3]
		if seen[typ] {
			return nil, fmt.Errorf("process type %s is given more than once", typ)
		}
		seen[typ] = true
		n, err := strconv.Atoi(m[2][1:])
		if err != nil {
			return nil, fmt.Errorf("invalid quantity in %q: %w", arg, err)
		}
		q := &api.Quantity{N: n}
		switch op {
		case '+':
			q.Relative = true
		case '-':
			q.N, q.Relative = -n, true
		}
		u := api.FormationUpdate{Type: typ, Quantity: q}
		if size != "" {
			u.Size = &size
		}
		updates = append(updates, u)
	}
	return updates, nil
}

// formationString prints a formation the way heroku ps:scale does:
// "web=1:Basic worker=0:Basic".
func formationString(formation []api.Formation) string {
	parts := make([]string, 0, len(formation))
	for _, f := range formation {
		parts = append(parts, fmt.Sprintf("%s=%s", f.Type, quantitySize(f)))
	}
	return strings.Join(parts, " ")
}

// quantitySize prints "2:Basic", or "2" when the size is unknown.
func quantitySize(f api.Formation) string {
	if f.Size == "" {
		return strconv.Itoa(f.Quantity)
	}
	return fmt.Sprintf("%d:%s", f.Quantity, f.Size)
}

func (e *clientEnv) scaleCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "scale [TYPE=QTY[:SIZE] | TYPE+N | TYPE-N]...",
		Aliases: []string{"ps:scale"},
		Short:   "Scale an app's process types, or show its formation",
		Long: `Change how many dynos of each process type an app runs, and optionally
their size, in one request (PATCH /apps/{app}/formation). TYPE=QTY sets the
quantity; TYPE+N and TYPE-N change it relative to the current quantity (the
server applies the change, so concurrent scales add up).

Without arguments, print the formation (GET /apps/{app}/formation), e.g.
"web=1:Basic worker=0:Basic". --json prints the API's response either way.`,
		Example: `  slipway scale -a demo
  slipway scale web=2 -a demo
  slipway scale web=2:Standard-2X worker+1 -a demo
  slipway ps:scale worker-1 -a demo`,
	}
	app := e.appFlag(cmd)
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		updates, err := parseScaleArgs(args)
		if err != nil {
			return err
		}
		name, c, err := app.withClient()
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if len(updates) == 0 {
			if *asJSON {
				return printList(cmd, c, client.Path("apps", name, "formation"), client.ListOptions{All: true})
			}
			formation, err := c.Formation(cmd.Context(), name)
			if err != nil {
				return err
			}
			if len(formation) == 0 {
				fmt.Fprintf(w, "No process types on %s.\nDeploy code with a Procfile to add process types.\n", appLabel(name))
				return nil
			}
			sort.Slice(formation, func(i, j int) bool { return formation[i].Type < formation[j].Type })
			fmt.Fprintln(w, formationString(formation))
			return nil
		}

		// The PATCH goes through Do to keep the raw response for --json.
		var raw json.RawMessage
		var result []api.Formation
		err = action(cmd.ErrOrStderr(), "Scaling dynos", func() (string, error) {
			body := api.FormationBatchRequest{Updates: updates}
			if _, err := c.Do(cmd.Context(), http.MethodPatch, client.Path("apps", name, "formation"), body, &raw, nil); err != nil {
				return "", err
			}
			if err := json.Unmarshal(raw, &result); err != nil {
				return "", fmt.Errorf("decode the formation: %w", err)
			}
			byType := map[string]api.Formation{}
			for _, f := range result {
				byType[f.Type] = f
			}
			var now []string
			for _, u := range updates {
				if f, ok := byType[u.Type]; ok {
					now = append(now, fmt.Sprintf("%s at %s", f.Type, quantitySize(f)))
				}
			}
			if len(now) == 0 {
				return "", nil
			}
			return "now running " + strings.Join(now, ", "), nil
		})
		if err != nil {
			return err
		}
		if *asJSON {
			return printRawJSON(w, raw)
		}
		return nil
	}
	return cmd
}
