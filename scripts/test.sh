#!/usr/bin/env bash
# Runs go vet and every test, under the race detector, in every module of
# the repository (the root module and the nested ones such as bench/).
# Needs Go and a C compiler (the race detector uses cgo).
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
for mod in $(git ls-files 'go.mod' '*/go.mod' 2>/dev/null || find . -name go.mod -not -path '*/testdata/*'); do
	dir=$(dirname "$mod")
	echo "== $dir"
	if ! (cd "$dir" && go vet ./... && go test -race -count=1 "$@" ./...); then
		echo "FAIL: module $dir" >&2
		status=1
	fi
done
exit $status
