// Command kube is cairn's multiplexer for the Kubernetes components and etcd:
// one link, one copy of the shared code in the image.
//
// The component is chosen by the name the binary was started as (a symlink
// named kubelet -> kube), or, when that name is "kube", by the first argument:
//
//	kube kubelet --version
//
// Each entry does what upstream's cmd/<name>/main.go does. os.Args is rewritten
// to start at the component name, so each command sees the same arguments as
// the upstream binary would (cobra, kubectl's plugin lookup and etcd's gateway
// subcommands all read os.Args).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	_ "time/tzdata" // CronJob time zones (kube-apiserver, kube-controller-manager)

	// Before anything that translates: kubectl's catalogue for kubectl only.
	_ "cairn.invalid/third_party/kubernetes/cmd/kube/kubectli18n"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"

	_ "k8s.io/client-go/plugin/pkg/client/auth" // kubectl's auth plugins
)

// commands maps a component name to a function returning its exit code.
var commands = map[string]func() int{
	"kube-apiserver": func() int { return cli.Run(apiserver.NewAPIServerCommand()) },
	"kube-controller-manager": func() int {
		return cli.Run(controllermanager.NewControllerManagerCommand())
	},
	"kube-proxy":     func() int { return cli.Run(proxy.NewProxyCommand()) },
	"kube-scheduler": func() int { return cli.Run(scheduler.NewSchedulerCommand()) },
	"kubelet": func() int {
		return cli.Run(kubelet.NewKubeletCommand(context.Background()))
	},
	"kubectl": func() int {
		logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) // nolint:errcheck
		if err := cli.RunNoErrOutput(kubectlcmd.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err) // prints and exits non-zero
		}
		return 0
	},
	"etcd": func() int {
		etcdmain.Main(os.Args) // exits on its own on error
		return 0
	},
}

func usage() {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(os.Stderr, "usage: kube <component> [args...]  (or run it through a symlink named <component>)")
	fmt.Fprintln(os.Stderr, "components:")
	for _, n := range names {
		fmt.Fprintln(os.Stderr, "  "+n)
	}
}

func main() {
	name := filepath.Base(os.Args[0])
	if name == "kube" {
		if len(os.Args) < 2 {
			usage()
			os.Exit(2)
		}
		name = os.Args[1]
		os.Args = os.Args[1:]
	}
	run, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "kube: unknown component %q\n", name)
		usage()
		os.Exit(2)
	}
	startProfile(name)
	os.Exit(run())
}
