#!/usr/bin/env bash
# Install Hobotnica at exactly one commit and switch to it, blue/green.
#
#   upgrade.sh SHA        (run as root, by hobotnica-upgrade@SHA.service or by hand)
#
# Layout: /opt/hobotnica/repo (a clone), /opt/hobotnica/releases/SHA (one per version, with its
# own .venv), /opt/hobotnica/current -> releases/SHA (what hobotnica@.service runs).
# The commit must be on the deploy branch (origin/main unless HOBOTNICA_DEPLOY_BRANCH says
# otherwise): a pull request's commit is never installed. Old releases stay, for rollback:
#   systemctl start hobotnica-upgrade@OLDSHA.service
set -euo pipefail

sha="${1:-}"
if [[ ! "$sha" =~ ^[0-9a-f]{40}$ ]]; then
  echo "usage: upgrade.sh SHA (40 lowercase hex digits)" >&2
  exit 2
fi
prefix="${HOBOTNICA_PREFIX:-/opt/hobotnica}"
config="${HOBOTNICA_CONFIG:-/etc/hobotnica/hobotnica.toml}"
branch="${HOBOTNICA_DEPLOY_BRANCH:-main}"
repo="$prefix/repo"
release="$prefix/releases/$sha"

git -C "$repo" fetch --quiet origin
if ! git -C "$repo" merge-base --is-ancestor "$sha" "origin/$branch"; then
  echo "upgrade.sh: $sha is not on origin/$branch; not installing it" >&2
  exit 1
fi
if [[ ! -x "$release/.venv/bin/hobotnica" ]]; then
  rm -rf "$release"
  mkdir -p "$prefix/releases"
  git -C "$repo" worktree prune
  git -C "$repo" worktree add --quiet --detach "$release" "$sha"
  python3 -m venv "$release/.venv"
  "$release/.venv/bin/pip" install --quiet "$release"
fi
"$release/.venv/bin/hobotnica" check-config --config "$config" >/dev/null

previous="$(readlink "$prefix/current" 2>/dev/null || true)"
ln -sfn "$release" "$prefix/current.new"
mv -T "$prefix/current.new" "$prefix/current"
if ! "$release/.venv/bin/hobotnica" switch --config "$config"; then
  echo "upgrade.sh: the switch failed; $prefix/current points back to ${previous:-nothing}" >&2
  if [[ -n "$previous" ]]; then
    ln -sfn "$previous" "$prefix/current.new"
    mv -T "$prefix/current.new" "$prefix/current"
  fi
  exit 1
fi
echo "upgrade.sh: running $sha"
