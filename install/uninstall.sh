#!/usr/bin/env bash
# uninstall.sh: remove a Slipway node installed by install.sh. The same as
# `install.sh --uninstall`; takes the same --root, --user, --data-dir,
# --no-systemd and --purge options.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/install.sh" --uninstall "$@"
