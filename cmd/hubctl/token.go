package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"

	"github.com/sessionledger/sessionledger/hub/hubapi"
)

func newToken() *cobra.Command {
	var (
		user, device, secretFile string
		ttl                      time.Duration
		asJSON                   bool
	)
	c := &cobra.Command{
		Use:   "token --user U [--device D] [--ttl 1h] --secret-file F",
		Short: "Mint a client JWT (HS256) with the secret hubd checks tokens with",
		Long: `token prints a JWT for a client: sub = user, device claim, iat = now,
exp = now + ttl and a random jti (the id hubctl revoke --jti takes; --json
shows it), signed HS256 with the secret in --secret-file (default:
HUBD_JWT_SECRET_FILE, the same file hubd is given with --jwt-secret-file).
hubd refuses tokens living longer than its --jwt-max-ttl (24h by default).`,
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
			c := hubapi.NewClaims(user, device, ttl, time.Now())
			tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
			if err != nil {
				return fmt.Errorf("token: %w", err)
			}
			if asJSON {
				b, _ := json.Marshal(map[string]any{"token": tok, "jti": c.ID, "sub": user, "device": device,
					"iat": c.IssuedAt.Time.UTC().Format(time.RFC3339), "exp": c.ExpiresAt.Time.UTC().Format(time.RFC3339)})
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return nil
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
	f.BoolVar(&asJSON, "json", false, "print the token with its jti, iat and exp as JSON")
	return c
}
