// The pod sandbox's process (containerd's sandbox_image in tests/e2e): holds the pod's
// namespaces, reaps orphaned children (it is PID 1 when the pod shares its process namespace)
// and exits on SIGTERM/SIGINT. Built static (CGO_ENABLED=0), so its image is this file alone.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
