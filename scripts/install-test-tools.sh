#!/usr/bin/env bash
# Installs what `make test` needs beyond Go, from Debian's packages, when it is
# missing: promtool, systemd-analyze and jq for deploy-check, and chromium for
# the storefront demo's browser test. Run as root (CI is); otherwise it says
# what is missing and the tests that need it skip (or fail, when CI is set).
set -euo pipefail

# Tools of `make deploy-check`, from Debian: promtool (package prometheus),
# systemd-analyze (systemd) and jq. Only missing tools are installed, after
# one apt-get update; a package the archive lacks is skipped here, and
# deploy-check then fails on the missing tool (CI is set). A policy-rc.d that
# denies service starts keeps the prometheus package from starting a server.
deploy_tools() {
  local tool pkg want=()
  for tool in promtool:prometheus systemd-analyze:systemd jq:jq; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || want+=("${tool#*:}")
  done
  [ "${#want[@]}" -gt 0 ] || return 0
  if [ "$(id -u)" != 0 ]; then
    echo "install-test-tools: not root, cannot install ${want[*]}" >&2
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  local install=() policy
  for pkg in "${want[@]}"; do
    policy=$(apt-cache policy "$pkg" 2>/dev/null || true)
    if grep -Eq '^[[:space:]]*Candidate: [^(]' <<<"$policy"; then
      install+=("$pkg")
    else
      echo "ci: no Debian package $pkg" >&2
    fi
  done
  [ "${#install[@]}" -gt 0 ] || return 0
  local added_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${install[@]}" >/dev/null
  if [ -n "$added_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
}
deploy_tools

# The browser of the storefront demo's test (internal/demo/browser_test.go):
# Debian's chromium, when missing. apt-get update runs only if no package
# lists are there yet (deploy_tools above may have fetched them already).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium
  else
    echo "install-test-tools: not root, cannot install chromium" >&2
  fi
fi


# PostgreSQL for the store contract suite on PostgreSQL (store/pgstore) and
# the end-to-end tests on both backends: internal/pgtest starts a throwaway
# cluster with initdb/pg_ctl from /usr/lib/postgresql/*/bin when
# HPPD_TEST_DATABASE_URL is not set. Debian's postgresql, when missing; the
# policy-rc.d keeps the package from starting a cluster of its own.
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || apt-get update -qq
    added_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod 0755 /usr/sbin/policy-rc.d
      added_policy=1
    fi
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    if [ -n "$added_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  else
    echo "install-test-tools: not root, cannot install postgresql" >&2
  fi
fi
