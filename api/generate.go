// Package api holds the protobuf definitions of dfs and the Go code generated
// from them. The generated files are committed, so building needs no protoc.
package api

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative dfs.proto meta.proto
