package client_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/client"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestCredentialsPath(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"SLIPWAY_CREDENTIALS_FILE": "/x/c.json", "XDG_CONFIG_HOME": "/xdg", "HOME": "/home/u"}, "/x/c.json"},
		{map[string]string{"XDG_CONFIG_HOME": "/xdg", "HOME": "/home/u"}, "/xdg/slipway/credentials.json"},
		{map[string]string{"HOME": "/home/u"}, "/home/u/.config/slipway/credentials.json"},
	} {
		got, err := client.CredentialsPath(envOf(tc.env))
		if err != nil || got != tc.want {
			t.Errorf("CredentialsPath(%v) = %q, %v; want %q", tc.env, got, err, tc.want)
		}
	}
	if _, err := client.CredentialsPath(envOf(nil)); err == nil {
		t.Error("CredentialsPath with no HOME succeeded")
	}
}

func TestSaveCredentialsMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "conf", "slipway")
	path := filepath.Join(dir, "credentials.json")
	if err := client.SaveCredentials(path, "http://a:5000/", "tok1"); err != nil {
		t.Fatal(err)
	}
	// Overwrite: still 0600 and no temp files left behind.
	if err := client.SaveCredentials(path, "http://b:5000", "tok2"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, want 0600", st.Mode().Perm())
	}
	dst, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if dst.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, want 0700", dst.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries, want only the credentials file", len(entries))
	}
	creds, err := client.LoadCredentials(path)
	if err != nil {
		t.Fatal(err)
	}
	if creds.URL != "http://b:5000" || creds.Token != "tok2" {
		t.Errorf("creds = %+v", creds)
	}
}

func TestFromGetenvPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "credentials.json")
	if err := client.SaveCredentials(file, "http://file:5000", "filetok"); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.json")

	for _, tc := range []struct {
		name      string
		env       map[string]string
		wantURL   string
		wantToken string
		wantErr   string
	}{
		{"env wins", map[string]string{"SLIPWAY_API_URL": "http://env:5000/", "SLIPWAY_API_TOKEN": "envtok", "SLIPWAY_CREDENTIALS_FILE": file},
			"http://env:5000", "envtok", ""},
		{"file only", map[string]string{"SLIPWAY_CREDENTIALS_FILE": file},
			"http://file:5000", "filetok", ""},
		{"env token, file url", map[string]string{"SLIPWAY_API_TOKEN": "envtok", "SLIPWAY_CREDENTIALS_FILE": file},
			"http://file:5000", "envtok", ""},
		{"env url equals file url", map[string]string{"SLIPWAY_API_URL": "http://file:5000/", "SLIPWAY_CREDENTIALS_FILE": file},
			"http://file:5000", "filetok", ""},
		{"file token not sent elsewhere", map[string]string{"SLIPWAY_API_URL": "http://other:5000", "SLIPWAY_CREDENTIALS_FILE": file},
			"", "", "not for http://other:5000"},
		{"xdg location", map[string]string{"XDG_CONFIG_HOME": "/nonexistent-xdg", "HOME": dir},
			"", "", "/nonexistent-xdg/slipway/credentials.json"},
		{"nothing", map[string]string{"SLIPWAY_CREDENTIALS_FILE": missing},
			"", "", "SLIPWAY_API_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, tok, err := client.FromGetenv(envOf(tc.env))
			if tc.wantErr != "" {
				if !errors.Is(err, client.ErrNoCredentials) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrNoCredentials mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u != tc.wantURL || tok != tc.wantToken {
				t.Errorf("got %q, %q; want %q, %q", u, tok, tc.wantURL, tc.wantToken)
			}
		})
	}
}

func TestFromGetenvCorruptFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(file, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := client.FromGetenv(envOf(map[string]string{"SLIPWAY_CREDENTIALS_FILE": file}))
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("err = %v, want one naming %s", err, file)
	}
}
