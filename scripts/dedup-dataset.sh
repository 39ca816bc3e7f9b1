#!/usr/bin/env bash
# Builds the default data set of `dfs bench dedup`: consecutive released
# versions of one Go module's source tree, fetched with `go mod download`
# and written as uncompressed tar files, one per version, named so that
# name order is release order.
#
#   scripts/dedup-dataset.sh [OUT_DIR] [MODULE] [VERSION...]
#
# Defaults: OUT_DIR ./dedup-dataset, MODULE google.golang.org/grpc, and
# the nine consecutive releases v1.66.0 through v1.68.1 (patch releases
# included, as users upgrade through them).
set -euo pipefail

out=${1:-./dedup-dataset}
module=${2:-google.golang.org/grpc}
shift $(( $# > 2 ? 2 : $# ))
versions=("$@")
if [[ ${#versions[@]} -eq 0 ]]; then
	versions=(v1.66.0 v1.66.1 v1.66.2 v1.67.0 v1.67.1 v1.67.2 v1.67.3 v1.68.0 v1.68.1)
fi

mkdir -p "$out"
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export GOMODCACHE="$work/modcache" GOFLAGS=-modcacherw

i=0
for v in "${versions[@]}"; do
	i=$((i + 1))
	dir=$(cd "$work" && go mod download -json "$module@$v" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [[ -z $dir || ! -d $dir ]]; then
		echo "dedup-dataset: could not download $module@$v" >&2
		exit 1
	fi
	name=$(printf '%02d-%s-%s.tar' "$i" "$(basename "$module")" "$v")
	# Sorted names and fixed metadata, so the same versions give the same
	# bytes; the tree is stored under the module's name without the version
	# (grpc/, not grpc@v1.66.0/), as a checkout of each release would be.
	base=$(basename "$dir")
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2000-01-01 00:00Z' \
		--transform "s,^${base//./\\.},${base%%@*}," \
		-C "$(dirname "$dir")" -cf "$out/$name" "$base"
	echo "$out/$name $(stat -c %s "$out/$name") bytes"
done
