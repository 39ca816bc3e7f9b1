//go:build linux

package e2e

import "syscall"

// sysProcAttr makes a child die with the test process, so that a test
// binary killed by -timeout leaves no dfs process behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
