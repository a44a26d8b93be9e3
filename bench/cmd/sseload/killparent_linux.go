package main

import (
	"os/exec"
	"syscall"
)

// killWithParent makes the kernel kill cmd's process when this one dies,
// so that a hub never outlives a driver that was killed itself.
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
