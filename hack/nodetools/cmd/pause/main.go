// Command pause is the local node's sandbox ("pause") process: it holds a pod's namespaces
// open, reaps the children that end up with it as PID 1, and exits 0 on SIGTERM or SIGINT.
// No registry is reachable here, so the node imports an image holding this binary under the
// name containerd's config pins as its sandbox image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
