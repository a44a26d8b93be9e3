//go:build !linux

package main

import "os/exec"

// killWithParent does nothing where the kernel cannot tie a child's life
// to its parent's: the driver still kills every hub it started on its
// own way out.
func killWithParent(*exec.Cmd) {}
