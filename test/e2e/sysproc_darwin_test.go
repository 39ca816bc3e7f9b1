//go:build darwin

package e2e

import "syscall"

// sysProcAttr is empty: darwin has no parent-death signal, so a test
// binary killed by -timeout may leave dfs processes behind.
func sysProcAttr() *syscall.SysProcAttr { return nil }
