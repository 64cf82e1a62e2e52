package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Environment variables read by FromEnv and CredentialsPath.
const (
	EnvAPIURL          = "SLIPWAY_API_URL"
	EnvAPIToken        = "SLIPWAY_API_TOKEN"
	EnvCredentialsFile = "SLIPWAY_CREDENTIALS_FILE"
)

// ErrNoCredentials is returned (wrapped) by FromEnv when neither the
// environment nor the credentials file give both an API URL and a token.
var ErrNoCredentials = errors.New("not logged in to a Slipway API")

// Credentials is the content of the credentials file.
type Credentials struct {
	URL   string `json:"url"`
	Token string `json:"token"`
}

// FromEnv returns the API URL and token to use, read from the process
// environment and the credentials file; see FromGetenv.
func FromEnv() (baseURL, token string, err error) {
	return FromGetenv(os.Getenv)
}

// FromGetenv returns the API URL and token to use, looking variables up
// with getenv (os.Getenv when nil):
//
//   - SLIPWAY_API_URL and SLIPWAY_API_TOKEN, when set, win;
//   - otherwise the missing one comes from the credentials file (see
//     CredentialsPath). The file's token is only used for the file's own
//     URL, so that SLIPWAY_API_URL pointing elsewhere never receives it.
//
// The error wraps ErrNoCredentials when the URL or the token is still
// missing, and describes the file when it exists but cannot be read.
func FromGetenv(getenv func(string) string) (baseURL, token string, err error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	baseURL = strings.TrimRight(getenv(EnvAPIURL), "/")
	token = getenv(EnvAPIToken)
	if baseURL != "" && token != "" {
		return baseURL, token, nil
	}
	path, err := CredentialsPath(getenv)
	if err != nil {
		return "", "", fmt.Errorf("%w (%s or %s is unset, and %w)", ErrNoCredentials, EnvAPIURL, EnvAPIToken, err)
	}
	creds, err := LoadCredentials(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("%w (%s or %s is unset, and there is no %s)", ErrNoCredentials, EnvAPIURL, EnvAPIToken, path)
	}
	if err != nil {
		return "", "", err
	}
	fileURL := strings.TrimRight(creds.URL, "/")
	if baseURL == "" {
		baseURL = fileURL
	}
	if token == "" && baseURL == fileURL {
		token = creds.Token
	}
	switch {
	case baseURL == "":
		return "", "", fmt.Errorf("%w (%s is unset, and %s has no url)", ErrNoCredentials, EnvAPIURL, path)
	case token == "" && baseURL != fileURL:
		return "", "", fmt.Errorf("%w (%s is unset, and %s holds a token for %s, not for %s)", ErrNoCredentials, EnvAPIToken, path, fileURL, baseURL)
	case token == "":
		return "", "", fmt.Errorf("%w (%s is unset, and %s has no token)", ErrNoCredentials, EnvAPIToken, path)
	}
	return baseURL, token, nil
}

// CredentialsPath returns where the credentials file is, looking variables
// up with getenv (os.Getenv when nil): $SLIPWAY_CREDENTIALS_FILE if set,
// else $XDG_CONFIG_HOME/slipway/credentials.json, else
// $HOME/.config/slipway/credentials.json.
func CredentialsPath(getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if p := getenv(EnvCredentialsFile); p != "" {
		return p, nil
	}
	if dir := getenv("XDG_CONFIG_HOME"); dir != "" {
		return filepath.Join(dir, "slipway", "credentials.json"), nil
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, ".config", "slipway", "credentials.json"), nil
	}
	return "", fmt.Errorf("cannot locate the credentials file: none of %s, XDG_CONFIG_HOME or HOME is set", EnvCredentialsFile)
}

// LoadCredentials reads a credentials file. A missing file gives an error
// matching fs.ErrNotExist.
func LoadCredentials(path string) (Credentials, error) {
	var creds Credentials
	data, err := os.ReadFile(path)
	if err != nil {
		return creds, fmt.Errorf("read credentials: %w", err)
	}
	if err := json.Unmarshal(data, &creds); err != nil {
		return creds, fmt.Errorf("read credentials %s: %w", path, err)
	}
	return creds, nil
}

// SaveCredentials writes the API URL and token to the credentials file at
// path, creating its directory with mode 0700 if needed. The file gets mode
// 0600 and is replaced atomically: written to a temporary file in the same
// directory, synced, then renamed over path.
func SaveCredentials(path, baseURL, token string) error {
	if path == "" {
		return errors.New("save credentials: empty path")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	data, err := json.MarshalIndent(Credentials{URL: strings.TrimRight(baseURL, "/"), Token: token}, "", "  ")
	if err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	data = append(data, '\n')

	// os.CreateTemp creates the file with mode 0600.
	f, err := os.CreateTemp(dir, ".credentials-*.tmp")
	if err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if tmp != "" {
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("save credentials: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("save credentials: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("save credentials: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	tmp = ""
	return nil
}
