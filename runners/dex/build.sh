#!/usr/bin/env bash
# Build Dex, the OpenID Connect provider the tests start (runners/oidc_provider.py), from
# the Go module proxy into runners/dex/bin/dex. Idempotent: a binary built from the pinned
# versions is kept and the script exits at once. Needs Go 1.25.8 or newer; the sources
# and their dependencies are cached in Go's module cache, so a rebuild downloads nothing.
set -euo pipefail
cd "$(dirname "$0")"

# A commit of Dex's master branch, as the module proxy has it (Dex's v2.x release tags do
# not fit its module path, which has no /v2, so the proxy serves commits as v0.0.0
# pseudo-versions: `go list -m -versions github.com/dexidp/dex` or the proxy's @v/list). Its go.mod replaces
# the nested module github.com/dexidp/dex/api/v2 (the gRPC admin API's generated code)
# with ./api/v2, which the module zip leaves out, and the proxy does not serve api/v2 at
# that commit; so the replace is dropped and the release api/v2 that go.mod requires is
# used. That release lacks the messages of five newer admin API services (clients,
# connectors, identities, MFA, sessions): their files are left out of the build, so those
# gRPC calls answer "unimplemented". Nothing here uses the gRPC API (it is off unless
# configured); OpenID Connect, the password grant and the token signing are untouched.
# Static password users with groups in their tokens (which the tests use) need Dex v2.45.0
# or later (dexidp/dex#4456); master has them.
DEX_VERSION=v0.0.0-20260806151424-ab64ed778070
DEX_API_VERSION=v2.4.0

BIN=bin/dex
STAMP=bin/dex.version
WANT="$DEX_VERSION api/v2@$DEX_API_VERSION"
if [[ -x $BIN && -f $STAMP && "$(cat "$STAMP")" == "$WANT" ]]; then
    exit 0
fi
if ! command -v go >/dev/null; then
    echo "runners/dex/build.sh: Go is needed to build Dex (https://go.dev/dl/)" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"

src=$(cd "$work" && go mod download -json "github.com/dexidp/dex@$DEX_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [[ -z $src || ! -d $src ]]; then
    echo "runners/dex/build.sh: github.com/dexidp/dex@$DEX_VERSION not downloaded" >&2
    exit 1
fi
cp -R "$src" "$work/dex"
chmod -R u+w "$work/dex"
(
    cd "$work/dex"
    go mod edit -dropreplace=github.com/dexidp/dex/api/v2 \
        -require="github.com/dexidp/dex/api/v2@$DEX_API_VERSION"
    rm server/apiserver/{clients,connectors,identities,mfa,sessions}.go server/apiserver/*_test.go
    go build -trimpath -ldflags "-s -w -X main.version=$DEX_VERSION" -o "$work/dex.bin" ./cmd/dex
)
mkdir -p bin
mv "$work/dex.bin" "$BIN"
echo "$WANT" >"$STAMP"
echo "built $(pwd)/$BIN: Dex $DEX_VERSION"
