package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/sessionledger/sessionledger/hub/hubapi"
)

func newToken() *cobra.Command {
	var (
		user, device, secretFile string
		ttl                      time.Duration
	)
	c := &cobra.Command{
		Use:   "token --user U [--device D] [--ttl 1h] --secret-file F",
		Short: "Mint a client JWT (HS256) with the secret hubd checks tokens with",
		Long: `token prints a JWT for a client: sub = user, device claim, exp = now + ttl,
signed HS256 with the secret in --secret-file (default: HUBD_JWT_SECRET_FILE,
the same file hubd is given with --jwt-secret-file).`,
		Example: `  hubctl token --user alice --device phone --secret-file /etc/hubd/jwt.key
  hubctl connect --user alice --device phone --jwt "$(hubctl token --user alice --device phone --secret-file jwt.key)"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if user == "" {
				return usageError{errors.New("token: --user is required")}
			}
			if secretFile == "" {
				return usageError{errors.New("token: --secret-file is required (or set HUBD_JWT_SECRET_FILE)")}
			}
			if ttl <= 0 {
				return usageError{errors.New("token: --ttl must be positive")}
			}
			b, err := hubapi.ReadSecretFile(secretFile)
			if err != nil {
				return fmt.Errorf("token: %w", err)
			}
			secret := bytes.TrimSpace(b)
			if len(secret) < 32 {
				return fmt.Errorf("token: the secret in %s is %d bytes; hubd wants at least 32", secretFile, len(secret))
			}
			tok, err := hubapi.MintToken(secret, user, device, ttl, time.Now())
			if err != nil {
				return fmt.Errorf("token: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&user, "user", "", "the user (sub claim)")
	f.StringVar(&device, "device", "", "the device claim")
	f.DurationVar(&ttl, "ttl", time.Hour, "validity")
	f.StringVar(&secretFile, "secret-file", os.Getenv("HUBD_JWT_SECRET_FILE"), "file holding the HS256 secret")
	return c
}
