// Command subreaper runs a command as its child and adopts, then reaps, every process that
// command leaves behind (PR_SET_CHILD_SUBREAPER). The local node runs containerd under it:
// containerd's shims are daemons whose starter exits at once, and PID 1 on these machines does
// not reap orphans, so without a subreaper every shim would stay a zombie after it exits.
//
//	subreaper COMMAND [ARG...]
//
// SIGTERM and SIGINT are passed on to COMMAND. subreaper exits with COMMAND's status once
// COMMAND and every adopted process have exited, so it outlives a crashed containerd for as
// long as that containerd's shims run, and it is gone once they are.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

const prSetChildSubreaper = 36

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: subreaper COMMAND [ARG...]")
		os.Exit(2)
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		fmt.Fprintf(os.Stderr, "subreaper: prctl: %v\n", errno)
		os.Exit(1)
	}
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "subreaper: %v\n", err)
		os.Exit(1)
	}
	child := cmd.Process.Pid
	code := -1
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			if code < 0 {
				_ = syscall.Kill(child, sig.(syscall.Signal))
			}
			continue
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if err == syscall.ECHILD {
				os.Exit(max(code, 0))
			}
			if pid <= 0 || err != nil {
				break
			}
			if pid == child {
				code = status.ExitStatus()
				if status.Signaled() {
					code = 128 + int(status.Signal())
				}
			}
		}
	}
}
