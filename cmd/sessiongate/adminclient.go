package main

import (
	"flag"
	"os"
	"strings"

	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/config"
)

// adminClientFlags locate the admin API for a command that calls it.
type adminClientFlags struct{ configPath, baseURL, tokenFile *string }

func adminFlags(fs *flag.FlagSet) adminClientFlags {
	return adminClientFlags{
		configPath: fs.String("config", "", "config file (for admin_addr and admin_token_file)"),
		baseURL:    fs.String("url", "", "admin API base URL (default http://<admin_addr>)"),
		tokenFile:  fs.String("token-file", "", "admin token file (default admin_token_file)"),
	}
}

// client is an admin API client from the flags, with admin_addr and
// admin_token_file of the config (file and environment) as defaults.
func (f adminClientFlags) client() (*admin.Client, error) {
	cfg, err := config.Load(*f.configPath, os.Environ())
	if err != nil {
		return nil, err
	}
	baseURL, tokenFile := *f.baseURL, *f.tokenFile
	if baseURL == "" {
		addr := cfg.AdminAddr
		if strings.HasPrefix(addr, ":") {
			addr = "127.0.0.1" + addr
		}
		baseURL = "http://" + addr
	}
	if tokenFile == "" {
		tokenFile = cfg.AdminTokenFile
	}
	var tok string
	if tokenFile != "" {
		tokens, err := readAdminTokens(tokenFile)
		if err != nil {
			return nil, err
		}
		tok = tokens[0]
	}
	return admin.NewClient(baseURL, tok, nil), nil
}
