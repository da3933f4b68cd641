package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/timearg"
)

func newRevoke(g *globals) *cobra.Command {
	var (
		req             hubpb.RevokeRequest
		before, expires string
		asJSON          bool
	)
	c := &cobra.Command{
		Use:   "revoke (--user U [--before TIME] | --jti ID [--expires TIME]) --reason R",
		Short: "Revoke client tokens: one by its id, or every token of a user issued before a time",
		Long: `revoke records a token_revoked event (with you as the actor) and returns once it
is durable and applied: live sessions holding a revoked token end with cause
revoked (the revocation's event id, your reason, reconnect not allowed), and
connects and refreshes with one are refused (recorded as connect_rejected and
token_refresh_refused).

--jti revokes the one token with that id (hubctl token puts one in each token
it makes); --expires is that token's expiry, if you know it, after which hubd
forgets the revocation (default: now plus the longest token lifetime hubd
accepts, --jwt-max-ttl). --user revokes every token of the user issued (iat)
before --before (default now: "log out everywhere"); the user gets new tokens
from the identity provider. Needs the operator role.`,
		Example: `  hubctl revoke --jti 5d2f0c1e9a7b4c3d8e6f --reason "laptop stolen"
  hubctl revoke --user alice --reason "password changed"
  hubctl revoke --user alice --before 2026-11-01T12:00:00Z --reason "session leak"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case (req.TokenId == "") == (req.User == ""):
				return usageError{errors.New("revoke: give --jti or --user")}
			case req.TokenId != "" && before != "":
				return usageError{errors.New("revoke: --before goes with --user")}
			case req.User != "" && expires != "":
				return usageError{errors.New("revoke: --expires goes with --jti")}
			case strings.TrimSpace(req.Reason) == "":
				return usageError{errors.New("revoke: --reason is required (it is recorded for the audit)")}
			}
			for _, f := range []struct {
				name, v string
				dst     *int64
			}{{"before", before, &req.IssuedBeforeUnixNano}, {"expires", expires, &req.TokenExpiresUnixNano}} {
				if f.v == "" {
					continue
				}
				t, err := timearg.Parse(f.v, time.Now(), time.UTC)
				if err != nil {
					return usageError{fmt.Errorf("revoke: --%s: %v", f.name, err)}
				}
				*f.dst = t.UnixNano()
			}
			return adminCall(g, "revoke", func(c hubpb.AdminClient, ctx context.Context) (proto.Message, error) {
				return c.Revoke(ctx, &req)
			}, cmd.OutOrStdout(), asJSON, describeAction("revoked"))
		},
	}
	f := c.Flags()
	f.StringVar(&req.TokenId, "jti", "", "revoke the token with this id (its jti claim)")
	f.StringVar(&expires, "expires", "", "with --jti: the token's expiry, a time as --until of ban takes (default: now plus hubd's --jwt-max-ttl)")
	f.StringVar(&req.User, "user", "", "revoke this user's tokens issued before --before")
	f.StringVar(&before, "before", "", "with --user: revoke tokens issued before this time: RFC3339, \"2026-12-06 16:00\" (UTC) or a duration ago like 2h (default now)")
	f.StringVar(&req.Reason, "reason", "", "why (recorded, and shown to the clients)")
	f.BoolVar(&asJSON, "json", false, "print the reply as JSON")
	return c
}
