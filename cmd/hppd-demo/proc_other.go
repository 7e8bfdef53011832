//go:build !linux

package main

import "syscall"

// sysProcAttr leaves the children in the demo's process group: a terminal's
// Ctrl-C reaches them too, and each shuts down gracefully on its own.
func sysProcAttr() *syscall.SysProcAttr { return nil }
