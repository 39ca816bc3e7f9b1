// Package e2e holds the end-to-end tests of dfs: they build the dfs binary,
// run real processes (`dfs server`, or `dfs coordinator` and `dfs datanode`
// apart), drive them with the CLI as a user would, and break them: kill -9,
// corrupt a chunk file, fill a disk, interrupt an upload.
//
// The suite takes a few minutes and is skipped by `go test -short`. Run it
// with:
//
//	go test -count=1 -v ./test/e2e
//
// A failing test prints the tail of every process's stdout and stderr.
package e2e
