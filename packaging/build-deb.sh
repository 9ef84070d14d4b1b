#!/usr/bin/env bash
# Builds the Debian package: target/debian/postern_<version>-1_<arch>.deb
#
#   packaging/build-deb.sh            release build, generated assets, cargo deb, lintian
#
# Needs cargo-deb (`cargo install cargo-deb --locked`) and lintian; .ci/package.sh
# installs them and the tools the package test uses. The package must pass lintian
# --pedantic without an error or a warning (packaging/lintian-overrides says why each
# override exists); other tags are printed. The release build is incremental: run twice, the
# second run only repackages.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb.sh: cargo-deb is missing: cargo install cargo-deb --locked (or bash .ci/package.sh)" >&2
    exit 1
fi
if ! command -v lintian >/dev/null 2>&1; then
    echo "build-deb.sh: lintian is missing: apt-get install lintian (or bash .ci/package.sh)" >&2
    exit 1
fi

target_dir=${CARGO_TARGET_DIR:-target}
assets=target/package-assets

echo "build-deb.sh: cargo build --release"
cargo build --release --locked --bin postern
bin="$target_dir/release/postern"

# The man pages (postern.1 and one per subcommand, postern-user-block.1 ...) and the
# completions come from the CLI definition itself (clap_mangen, clap_complete) through
# the hidden `postern generate-assets DIR`; postern.toml.5 from packaging/postern.toml,
# built into the binary.
rm -rf "$assets"
mkdir -p "$assets"
"$bin" generate-assets "$assets" >/dev/null
for f in man/postern.1 man/postern-user-block.1 man/postern.toml.5 \
    completions/postern.bash completions/_postern completions/postern.fish; do
    [ -s "$assets/$f" ] || { echo "build-deb.sh: generate-assets did not write $f" >&2; exit 1; }
done
gzip -9n "$assets"/man/*.1 "$assets"/man/*.5

# The Debian changelog names the version being packaged; its date is the last commit's
# (or SOURCE_DATE_EPOCH), so rebuilding the same commit gives the same package.
version=$("$bin" --version | awk '{print $2}')
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
maintainer=$(sed -n 's/^maintainer = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
{
    printf 'postern (%s-1) unstable; urgency=medium\n\n' "$version"
    printf '  * Upstream release %s, packaged with cargo-deb.\n' "$version"
    printf '    Changes: /usr/share/doc/postern/README.md and the project history.\n\n'
    printf ' -- %s  %s\n' "$maintainer" "$(LC_ALL=C date -u -R -d "@$epoch")"
} > "$assets/changelog"

echo "build-deb.sh: cargo deb"
deb=$(cargo deb --no-build --locked --deb-revision 1 --output target/debian/ | tail -n1)
[ -f "$deb" ] || { echo "build-deb.sh: cargo deb wrote no package ($deb)" >&2; exit 1; }

echo "build-deb.sh: lintian --pedantic $deb"
if ! lintian --pedantic --fail-on error,warning "$deb"; then
    echo "build-deb.sh: lintian reports errors or warnings (above)" >&2
    exit 1
fi
echo "$deb"
