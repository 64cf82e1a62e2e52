#!/usr/bin/env bash
# install.sh: install (or remove) a Slipway node on a Debian/Ubuntu machine.
#
# It puts the slipway binary in place, creates the system user and the data
# directory, writes the node's config from flags, installs the systemd unit
# (restart always) and starts it. Running it again with the same flags
# changes nothing; with other flags it rewrites the config and restarts the
# node. The node's data (Raft log, snapshots) is never touched except by
# --uninstall --purge.
#
# The Vagrantfile provisions every VM with this script, and the testbed
# (testbed/) installs each of its nodes with it, with the same flags plus
# --root DIR --no-systemd. docs/install.md walks through a real install.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: install.sh [options]            install or update this machine's node
       install.sh --uninstall [--purge] [--root DIR]

Node settings (written to /etc/slipway/slipway.json; docs/configuration.md
describes each one):
  --node-name NAME          unique within the region (default: short host name)
  --region NAME             region (default: local)
  --zone NAME               availability zone (default: default)
  --bind ADDR               IP address every port listens on (default: 0.0.0.0)
  --advertise ADDR          IP address other nodes reach this one at (required
                            when --bind is 0.0.0.0)
  --join LIST               comma-separated gossip addresses (host[:port], port
                            5002 by default) of region members to join
  --join-wan LIST           comma-separated WAN gossip addresses (host[:port],
                            port 5004 by default) of nodes in any region
  --bootstrap-expect N      form the region's Raft cluster once N nodes see each
                            other (3 on the first three nodes, 0 on later ones)
  --voters N                target number of Raft voters: 1, 3 or 5
  --domain DOMAIN           cluster domain: apps answer at APP.DOMAIN
  --router-url URL          public base URL of the routers (apps' web_url)
  --admin-email EMAIL       the admin user's email
  --encrypt-key-file FILE   base64 gossip/RPC key, the same on every node; it is
                            copied to /etc/slipway/cluster.key
  --admin-token-file FILE   the admin token the first leader registers; copied
                            to /etc/slipway/admin-token
  --dyno-memory MB          memory this node gives to dynos (default: 80%)
  --dyno-ports RANGE        host ports for dynos (default: 30000-39999)
  --log-level LEVEL         debug, info, warn or error (default: info)
  --log-format FORMAT       text or json (default: text)
  --data-dir DIR            data directory (default: /var/lib/slipway)

Installation:
  --binary PATH             the slipway binary to install (default: the
                            repository's bin/slipway, else slipway in PATH)
  --user NAME               system user the node runs as (default: slipway;
                            use root for the runc dyno runtime)
  --root DIR                install everything under DIR instead of / (a staging
                            root, as the testbed does): no system user is
                            created and files keep the caller's ownership
  --no-systemd              do not install or start the systemd unit; print the
                            command that runs the node instead (the testbed
                            starts its nodes itself)
  --no-start                install and enable the unit but do not (re)start it
  --uninstall               stop and remove the unit, the binary and
                            /etc/slipway; keep the data directory
  --purge                   with --uninstall: also remove the data directory and
                            the system user
  -h, --help                this help
EOF
}

die() {
	echo "install.sh: $*" >&2
	exit 1
}
say() { echo "==> $*"; }

# --- flags ---------------------------------------------------------------
node_name="" region="local" zone="default" bind="0.0.0.0" advertise=""
join="" join_wan="" bootstrap_expect="" voters="" domain="" router_url=""
admin_email="" key_file="" token_file="" dyno_memory="" dyno_ports=""
log_level="" log_format="" data_dir=""
binary="" run_user="slipway" root="" systemd=1 start=1 uninstall=0 purge=0

need_arg() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
	case "$1" in
	--node-name) need_arg "$@"; node_name=$2; shift 2 ;;
	--region) need_arg "$@"; region=$2; shift 2 ;;
	--zone) need_arg "$@"; zone=$2; shift 2 ;;
	--bind) need_arg "$@"; bind=$2; shift 2 ;;
	--advertise) need_arg "$@"; advertise=$2; shift 2 ;;
	--join) need_arg "$@"; join=$2; shift 2 ;;
	--join-wan) need_arg "$@"; join_wan=$2; shift 2 ;;
	--bootstrap-expect) need_arg "$@"; bootstrap_expect=$2; shift 2 ;;
	--voters) need_arg "$@"; voters=$2; shift 2 ;;
	--domain) need_arg "$@"; domain=$2; shift 2 ;;
	--router-url) need_arg "$@"; router_url=$2; shift 2 ;;
	--admin-email) need_arg "$@"; admin_email=$2; shift 2 ;;
	--encrypt-key-file) need_arg "$@"; key_file=$2; shift 2 ;;
	--admin-token-file) need_arg "$@"; token_file=$2; shift 2 ;;
	--dyno-memory) need_arg "$@"; dyno_memory=$2; shift 2 ;;
	--dyno-ports) need_arg "$@"; dyno_ports=$2; shift 2 ;;
	--log-level) need_arg "$@"; log_level=$2; shift 2 ;;
	--log-format) need_arg "$@"; log_format=$2; shift 2 ;;
	--data-dir) need_arg "$@"; data_dir=$2; shift 2 ;;
	--binary) need_arg "$@"; binary=$2; shift 2 ;;
	--user) need_arg "$@"; run_user=$2; shift 2 ;;
	--root) need_arg "$@"; root=$2; shift 2 ;;
	--no-systemd) systemd=0; shift ;;
	--no-start) start=0; shift ;;
	--uninstall) uninstall=1; shift ;;
	--purge) purge=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown option: $1" ;;
	esac
done

if [[ -n "$root" ]]; then
	[[ "$root" == /* ]] || root="$(pwd)/$root"
	root=${root%/}
fi

# Paths on this machine (under --root when given).
etc_dir="$root/etc/slipway"
config="$etc_dir/slipway.json"
key_dest="$etc_dir/cluster.key"
token_dest="$etc_dir/admin-token"
bin_dest="$root/usr/local/bin/slipway"
unit_dest="$root/etc/systemd/system/slipway.service"
data_dir=${data_dir:-/var/lib/slipway}
[[ "$data_dir" == /* ]] || die "--data-dir must be an absolute path"
data_path="$root$data_dir"
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# With --root nothing outside DIR is touched: no user, no chown.
manage_user=1
[[ -n "$root" ]] && manage_user=0
[[ $manage_user == 0 || $EUID == 0 ]] || die "run as root (or with --root DIR to stage an install)"

have_systemd() { command -v systemctl >/dev/null 2>&1; }

# --- uninstall -------------------------------------------------------------
if [[ $uninstall == 1 ]]; then
	if [[ $systemd == 1 && -f "$unit_dest" ]] && have_systemd; then
		say "stopping and disabling slipway.service"
		if [[ -n "$root" ]]; then
			systemctl --root="$root" disable slipway.service >/dev/null 2>&1 || true
		else
			systemctl disable --now slipway.service || true
		fi
	fi
	rm -f "$unit_dest"
	if [[ $systemd == 1 && -z "$root" ]] && have_systemd; then systemctl daemon-reload || true; fi
	say "removing $bin_dest and $etc_dir"
	rm -f "$bin_dest"
	rm -rf "$etc_dir"
	if [[ $purge == 1 ]]; then
		say "removing the node's data in $data_path"
		rm -rf "$data_path"
		if [[ $manage_user == 1 && "$run_user" != root ]] && id -u "$run_user" >/dev/null 2>&1; then
			say "removing user $run_user"
			userdel "$run_user" || true
		fi
	else
		[[ -d "$data_path" ]] && say "kept the node's data in $data_path (--purge removes it)"
	fi
	say "uninstalled. The cluster still lists this node until dead_server_grace passes."
	exit 0
fi

# --- checks ------------------------------------------------------------------
node_name=${node_name:-$(hostname -s)}
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
is_name() { [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]]; }
is_name "$node_name" || die "--node-name '$node_name': use letters, digits, '.', '_' and '-'"
is_name "$region" || die "--region '$region': use letters, digits, '.', '_' and '-'"
is_name "$zone" || die "--zone '$zone': use letters, digits, '.', '_' and '-'"
[[ -z "$bootstrap_expect" ]] || is_uint "$bootstrap_expect" || die "--bootstrap-expect must be a number"
[[ -z "$voters" || "$voters" =~ ^[135]$ ]] || die "--voters must be 1, 3 or 5"
[[ -z "$dyno_memory" ]] || is_uint "$dyno_memory" || die "--dyno-memory must be a number of MB"
[[ -z "$dyno_ports" || "$dyno_ports" =~ ^[0-9]+-[0-9]+$ ]] || die "--dyno-ports must be a range like 30000-39999"
[[ -z "$log_level" || "$log_level" =~ ^(debug|info|warn|error)$ ]] || die "--log-level must be debug, info, warn or error"
[[ -z "$log_format" || "$log_format" =~ ^(text|json)$ ]] || die "--log-format must be text or json"
if [[ "$bind" == 0.0.0.0 || "$bind" == "::" ]]; then
	[[ -n "$advertise" ]] || die "--advertise is required when --bind is $bind (other nodes need an address to reach this one)"
fi
[[ -z "$key_file" || -r "$key_file" ]] || die "--encrypt-key-file $key_file is not readable"
[[ -z "$token_file" || -r "$token_file" ]] || die "--admin-token-file $token_file is not readable"
if [[ -n "$key_file" ]]; then
	key_len=$(tr -d '[:space:]' <"$key_file" | base64 -d 2>/dev/null | wc -c) || key_len=0
	[[ "$key_len" =~ ^(16|24|32)$ ]] || die "--encrypt-key-file $key_file must hold a base64 key of 16, 24 or 32 bytes (make one with: head -c 32 /dev/urandom | base64)"
fi

if [[ -z "$binary" ]]; then
	if [[ -x "$script_dir/../bin/slipway" ]]; then
		binary="$script_dir/../bin/slipway"
	elif command -v slipway >/dev/null 2>&1; then
		binary=$(command -v slipway)
	else
		die "no slipway binary: build one with 'make build' or pass --binary PATH"
	fi
fi
[[ -x "$binary" ]] || die "--binary $binary is not an executable file"
"$binary" --version >/dev/null 2>&1 || die "$binary does not run here (built for another OS or CPU? GOOS=linux GOARCH=$(uname -m) go build ./cmd/slipway)"

if [[ $systemd == 1 && -z "$root" ]]; then
	if ! have_systemd || [[ ! -d /run/systemd/system ]]; then
		die "systemd is not running on this machine; use --no-systemd and start the node yourself"
	fi
fi
if [[ -z "$root" && -r /etc/os-release ]]; then
	# shellcheck disable=SC1091
	os_id=$(. /etc/os-release && echo "${ID:-} ${ID_LIKE:-}")
	[[ " $os_id " == *" debian "* || " $os_id " == *" ubuntu "* ]] || echo "install.sh: warning: made for Debian/Ubuntu, this is '$os_id'" >&2
fi

# --- JSON --------------------------------------------------------------------
json_str() {
	local s=$1
	[[ "$s" != *[[:cntrl:]]* ]] || die "control characters are not allowed in settings"
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	printf '"%s"' "$s"
}
# json_list "a,b:1" DEFAULT_PORT: a JSON array of host:port strings.
json_list() {
	local out="" item port=$2
	local -a items
	IFS=',' read -r -a items <<<"$1"
	for item in "${items[@]}"; do
		item=${item// /}
		[[ -n "$item" ]] || continue
		# A bare host or IPv4 address gets the default port.
		if [[ "$item" != *:* ]]; then item="$item:$port"; fi
		out+="${out:+, }$(json_str "$item")"
	done
	printf '[%s]' "$out"
}

render_config() {
	local -a kv=()
	kv+=("\"node_name\": $(json_str "$node_name")")
	kv+=("\"region\": $(json_str "$region")")
	kv+=("\"zone\": $(json_str "$zone")")
	kv+=("\"data_dir\": $(json_str "$data_path")")
	kv+=("\"bind_addr\": $(json_str "$bind")")
	[[ -z "$advertise" ]] || kv+=("\"advertise_addr\": $(json_str "$advertise")")
	[[ -z "$join" ]] || kv+=("\"join\": $(json_list "$join" 5002)")
	[[ -z "$join_wan" ]] || kv+=("\"join_wan\": $(json_list "$join_wan" 5004)")
	[[ -z "$bootstrap_expect" ]] || kv+=("\"bootstrap_expect\": $bootstrap_expect")
	[[ -z "$voters" ]] || kv+=("\"voters\": $voters")
	[[ -z "$domain" ]] || kv+=("\"domain\": $(json_str "$domain")")
	[[ -z "$router_url" ]] || kv+=("\"router_url\": $(json_str "$router_url")")
	[[ -z "$admin_email" ]] || kv+=("\"admin_email\": $(json_str "$admin_email")")
	[[ -z "$key_file" ]] || kv+=("\"encrypt_key_file\": $(json_str "$key_dest")")
	[[ -z "$token_file" ]] || kv+=("\"initial_admin_token_file\": $(json_str "$token_dest")")
	[[ -z "$dyno_memory" ]] || kv+=("\"dyno_memory_mb\": $dyno_memory")
	[[ -z "$dyno_ports" ]] || kv+=("\"dyno_ports\": $(json_str "$dyno_ports")")
	[[ -z "$log_level" ]] || kv+=("\"log_level\": $(json_str "$log_level")")
	[[ -z "$log_format" ]] || kv+=("\"log_format\": $(json_str "$log_format")")
	local i
	echo "{"
	for i in "${!kv[@]}"; do
		if [[ $i -lt $((${#kv[@]} - 1)) ]]; then echo "  ${kv[$i]},"; else echo "  ${kv[$i]}"; fi
	done
	echo "}"
}

# --- install -----------------------------------------------------------------
changed=0
# put SRC DEST MODE [OWNER]: copy when the content or mode differs.
put() {
	local src=$1 dest=$2 mode=$3 owner=${4:-}
	if [[ -f "$dest" ]] && cmp -s "$src" "$dest" && [[ "$(stat -c %a "$dest")" == "${mode#0}" ]]; then
		return 0
	fi
	install -D -m "$mode" "$src" "$dest"
	if [[ -n "$owner" && $manage_user == 1 ]]; then chown "$owner" "$dest"; fi
	say "wrote $dest"
	changed=1
}

if [[ $manage_user == 1 && "$run_user" != root ]] && ! id -u "$run_user" >/dev/null 2>&1; then
	say "creating system user $run_user"
	useradd --system --user-group --home-dir "$data_dir" --no-create-home --shell /usr/sbin/nologin "$run_user"
fi
group=$run_user
[[ "$run_user" == root ]] && group=root

install -d -m 0755 "$root/usr/local/bin"
install -d -m 0750 "$etc_dir"
install -d -m 0700 "$data_path"
if [[ $manage_user == 1 ]]; then
	chown "root:$group" "$etc_dir"
	chown "$run_user:$group" "$data_path"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

put "$binary" "$bin_dest" 0755
[[ -z "$key_file" ]] || put "$key_file" "$key_dest" 0640 "root:$group"
[[ -z "$token_file" ]] || put "$token_file" "$token_dest" 0640 "root:$group"
render_config >"$tmp/slipway.json"
put "$tmp/slipway.json" "$config" 0640 "root:$group"
[[ -n "$key_file" || -f "$key_dest" ]] || echo "install.sh: warning: no --encrypt-key-file: gossip and internal RPC are not encrypted" >&2

run_cmd="$bin_dest agent --config $config"
if [[ $systemd == 0 ]]; then
	say "installed (no systemd unit). Run the node with:"
	echo "    $run_cmd"
	exit 0
fi

# The unit: install/slipway.service with this install's paths and user.
sed -e "s|^User=.*|User=$run_user|" \
	-e "s|^Group=.*|Group=$group|" \
	-e "s|^ExecStart=.*|ExecStart=$run_cmd|" \
	-e "s|^EnvironmentFile=.*|EnvironmentFile=-$etc_dir/slipway.env|" \
	"$script_dir/slipway.service" >"$tmp/slipway.service"
put "$tmp/slipway.service" "$unit_dest" 0644

if [[ -n "$root" ]]; then
	# A staged root: enable offline, nothing to start.
	systemctl --root="$root" enable slipway.service >/dev/null
	say "installed and enabled under $root"
	exit 0
fi
systemctl daemon-reload
systemctl enable slipway.service >/dev/null 2>&1
if [[ $start == 0 ]]; then
	say "installed and enabled; start it with: systemctl start slipway"
	exit 0
fi
if [[ $changed == 1 ]] && systemctl is-active --quiet slipway.service; then
	say "restarting slipway.service (binary or config changed)"
	systemctl restart slipway.service
elif ! systemctl is-active --quiet slipway.service; then
	say "starting slipway.service"
	systemctl start slipway.service
else
	say "slipway.service is running and nothing changed"
fi
# Crash loops show up within a few seconds.
sleep 3
if ! systemctl is-active --quiet slipway.service; then
	journalctl -u slipway.service -n 30 --no-pager >&2 || true
	die "slipway.service is not running (journalctl -u slipway shows why)"
fi
say "slipway.service is running: $node_name in region $region, zone $zone"
