#!/usr/bin/env bash
# The dashboard's chart library, TradingView's lightweight-charts (Apache-2.0), is vendored in
# crates/web/assets/vendor/ as its npm package's own files, byte for byte. This script fetches
# the package from the npm registry at the pinned version (`npm pack`, which checks the
# registry's integrity hash) and checks that the vendored files are identical to it, and that
# the main file has the SHA-256 recorded below. .ci/run runs it.
#
#   web/vendor.sh            # check
#   web/vendor.sh --update   # replace the vendored files with the pinned version's (then update
#                            # VERSION/SHA256 here and the assets' table in crates/web/src/lib.rs)
set -euo pipefail
VERSION=5.2.1
SHA256=1bb1ee79f9d4dd17261b53d930f7a8995748276f80e7ba0e24412b5068062f5f
cd "$(dirname "$0")/.."
dest=crates/web/assets/vendor
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "lightweight-charts@$VERSION" >/dev/null && tar xzf "lightweight-charts-$VERSION.tgz")
status=0
for pair in \
    "dist/lightweight-charts.standalone.production.mjs:lightweight-charts.standalone.production.mjs" \
    "LICENSE:lightweight-charts.LICENSE"; do
    from="$tmp/package/${pair%%:*}"
    to="$dest/${pair##*:}"
    if [ "${1:-}" = "--update" ]; then
        cp "$from" "$to"
        echo "updated $to from lightweight-charts@$VERSION"
    elif cmp -s "$from" "$to"; then
        echo "ok: $to is npm's lightweight-charts@$VERSION ${pair%%:*}"
    else
        echo "DIFFERENT: $to is not npm's lightweight-charts@$VERSION ${pair%%:*}" >&2
        status=1
    fi
done
if [ "${1:-}" != "--update" ]; then
    got="$(sha256sum "$dest/lightweight-charts.standalone.production.mjs" | cut -d' ' -f1)"
    if [ "$got" != "$SHA256" ]; then
        echo "DIFFERENT: sha256 $got, expected $SHA256" >&2
        status=1
    fi
fi
exit $status
