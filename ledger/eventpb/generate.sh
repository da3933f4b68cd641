#!/usr/bin/env bash
# Regenerates the Go code for every .proto in the repository.
# protoc comes from Debian's protobuf-compiler; the plugins are pinned in
# go.mod as tools, so everyone generates byte-identical code.
# Usage: bash ledger/eventpb/generate.sh   (from anywhere in the repo)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$bin/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc
for proto in $(git ls-files '*.proto' 2>/dev/null || find . -name '*.proto'); do
  protoc -I . \
    --plugin=protoc-gen-go="$bin/protoc-gen-go" \
    --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
    --go_out=. --go_opt=paths=source_relative \
    $(grep -q '^service ' "$proto" && echo --go-grpc_out=. --go-grpc_opt=paths=source_relative) \
    "$proto"
done
