package main

import "syscall"

// sysProcAttr puts a child in its own process group, so the terminal's Ctrl-C
// reaches only the demo, which then stops the children in order; and asks the
// kernel to send the child SIGTERM should the demo die without stopping it.
// (Pdeathsig follows the thread that started the child; the Go runtime does
// not end threads of its own accord, and this program locks none.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
