package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/internal/termtext"
)

func newAdminToken(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "admin-token (add | list | remove)",
		Short: "Mint, list and remove named admin tokens and their roles (in DATA/admin.token)",
		Long: `admin-token edits hubd's admin token file, DATA/admin.token (mode 0600), where
it runs: on hubd's machine, as a user that can write the data directory. hubd
re-reads the file when it changes (or on SIGHUP): no restart. In a cluster, run
it on any node: the file is the cluster's, and every node takes the change.

Each token has a name, recorded as the actor of its calls, and a role:
  auditor   the Audit service (auditq), hubctl sessions, hubctl cluster
  operator  also kick, ban, unban, notify, revoke
  admin     everything, backup included
A call outside the token's role is refused (PermissionDenied) and recorded
as admin_call_refused with the token's name.`,
		Example: `  hubctl admin-token add --name compliance-1 --role auditor
  hubctl admin-token add --name ops-bob --role operator
  hubctl admin-token list
  hubctl admin-token remove --name ops-bob`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var name, role string
	var asJSON bool
	add := &cobra.Command{
		Use:   "add --name N --role ROLE",
		Short: "Mint a token and add it to the file; prints it",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return usageError{errors.New("admin-token add: --name is required")}
			}
			r, err := hubapi.ParseRole(role)
			if err != nil {
				return usageError{fmt.Errorf("admin-token add: --role: %w", err)}
			}
			t, err := hubapi.AddAdminToken(g.dataDir, name, r)
			if err != nil {
				return fmt.Errorf("admin-token add: %w", err)
			}
			if asJSON {
				b, _ := json.Marshal(map[string]string{"name": t.Name, "role": string(t.Role), "token": t.Token})
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	add.Flags().StringVar(&name, "name", "", "the token's name: the actor recorded for its calls")
	add.Flags().StringVar(&role, "role", "", "auditor, operator or admin")
	add.Flags().BoolVar(&asJSON, "json", false, "print name, role and token as JSON")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the tokens' names and roles (not the tokens)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			toks, err := hubapi.ReadAdminTokenFile(adminTokenPath(g))
			if err != nil {
				return fmt.Errorf("admin-token list: %w", err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				for _, t := range toks {
					b, _ := json.Marshal(map[string]string{"name": t.Name, "role": string(t.Role)})
					fmt.Fprintln(out, string(b))
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE")
			for _, t := range toks {
				fmt.Fprintf(tw, "%s\t%s\n", termtext.Cell(t.Name), termtext.Cell(string(t.Role)))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	remove := &cobra.Command{
		Use:   "remove --name N",
		Short: "Remove the named token from the file",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return usageError{errors.New("admin-token remove: --name is required")}
			}
			if err := hubapi.RemoveAdminToken(g.dataDir, name); err != nil {
				return fmt.Errorf("admin-token remove: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", termtext.Field(name))
			return nil
		},
	}
	remove.Flags().StringVar(&name, "name", "", "the token's name")
	c.AddCommand(add, list, remove)
	return c
}
