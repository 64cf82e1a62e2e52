package logplex

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Drain URL schemes.
const (
	SchemeSyslog    = "syslog"     // TCP, RFC 6587 octet counting
	SchemeSyslogTLS = "syslog+tls" // the same over TLS
	SchemeHTTPS     = "https"      // batched POSTs of application/logplex-1
	SchemeHTTP      = "http"       // the same in clear text
)

// MaxDrainURLLen bounds a drain URL.
const MaxDrainURLLen = 2048

// ParseDrainURL validates a log drain URL and returns it parsed. The
// errors are sentences meant for the API's users.
//
// Accepted: syslog://HOST:PORT and syslog+tls://HOST:PORT (a port is
// required; no credentials, path, query or fragment), and
// https://[USER:PASS@]HOST[:PORT][/PATH][?QUERY] (or http://), whose
// credentials are sent as HTTP basic auth.
func ParseDrainURL(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("Url can't be blank.")
	}
	if len(raw) > MaxDrainURLLen {
		return nil, fmt.Errorf("Url is too long (at most %d characters).", MaxDrainURLLen)
	}
	for _, c := range raw {
		if c <= ' ' || c == 0x7f || c > 0x7e {
			return nil, errors.New("Url must not contain spaces, control or non-ASCII characters (percent-encode them).")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("Url is invalid: %s.", strings.TrimPrefix(err.Error(), "parse "))
	}
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case SchemeSyslog, SchemeSyslogTLS, SchemeHTTPS, SchemeHTTP:
	case "":
		return nil, errors.New("Url must start with syslog://, syslog+tls:// or https://.")
	default:
		return nil, fmt.Errorf("Url scheme %q is not supported: use syslog://, syslog+tls:// or https://.", u.Scheme)
	}
	u.Scheme = scheme
	if u.Opaque != "" {
		return nil, fmt.Errorf("Url must look like %s://host:port.", scheme)
	}
	host := u.Hostname()
	if host == "" {
		return nil, errors.New("Url must include a host.")
	}
	if err := validHost(host); err != nil {
		return nil, err
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || (len(p) > 1 && p[0] == '0') {
			return nil, fmt.Errorf("Url port %q is not a port number (1-65535).", p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, errors.New("Url has an empty port.")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, errors.New("Url must not have a fragment (#...).")
	}
	switch scheme {
	case SchemeSyslog, SchemeSyslogTLS:
		if u.User != nil {
			return nil, errors.New("Syslog drain URLs must not contain credentials: syslog has no authentication (the drain token identifies your app).")
		}
		if u.Port() == "" {
			return nil, fmt.Errorf("Url must include a port (%s://host:port).", scheme)
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery {
			return nil, fmt.Errorf("Url must be %s://host:port, without a path or query.", scheme)
		}
	default:
		if u.User != nil && u.User.Username() == "" {
			return nil, errors.New("Url credentials need a user name (https://user:password@host/).")
		}
	}
	return u, nil
}

// validHost accepts an IP address or a DNS name.
func validHost(h string) error {
	if ip := net.ParseIP(h); ip != nil {
		if ip.IsUnspecified() || ip.IsMulticast() {
			return fmt.Errorf("Url host %s is not a unicast address.", h)
		}
		return nil
	}
	if strings.Contains(h, "%") {
		return errors.New("Url host must not contain '%'.")
	}
	if len(h) > 253 {
		return errors.New("Url host name is too long.")
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("Url host %q is not a valid host name.", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
			if !ok || ((i == 0 || i == len(label)-1) && c == '-') {
				return fmt.Errorf("Url host %q is not a valid host name.", h)
			}
		}
	}
	return nil
}

// redactURL hides a drain URL's password (for errors and logs).
func redactURL(u *url.URL) string {
	return u.Redacted()
}
