// Builds the node and control-plane components the end-to-end cluster (tests/e2e/cluster.sh)
// needs beside kube-apiserver, from the published k8s.io/kubernetes module, as ONE multi-call
// binary: kubelet, kube-controller-manager, kube-scheduler and kube-proxy share most of their
// packages, so one link instead of four saves minutes and about 300 MB. The component is
// chosen by the name the binary is called by (symlinks made by tools/k8s/build.sh) or by the
// first argument (`kube-node kubelet --version`).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	_ "time/tzdata" // CronJob time zones (kube-controller-manager)

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

var commands = map[string]func() *cobra.Command{
	"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
	"kube-controller-manager": func() *cobra.Command { return controllermanager.NewControllerManagerCommand() },
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	"kube-proxy":              func() *cobra.Command { return proxy.NewProxyCommand() },
}

func main() {
	name := filepath.Base(os.Args[0])
	if _, ok := commands[name]; !ok && len(os.Args) > 1 {
		name = os.Args[1]
		os.Args = append(os.Args[:1], os.Args[2:]...)
	}
	newCommand, ok := commands[name]
	if !ok {
		fmt.Fprintln(os.Stderr, "usage: kube-node {kubelet|kube-controller-manager|kube-scheduler|kube-proxy} [flags] (or call it by one of those names)")
		os.Exit(2)
	}
	os.Exit(cli.Run(newCommand()))
}
