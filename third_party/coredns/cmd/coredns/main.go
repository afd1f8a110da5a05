// Command coredns is CoreDNS with only the plugins a Kubernetes node's
// cluster DNS uses.
//
// Upstream's main package (coredns.go at the module root) blank-imports
// github.com/coredns/coredns/core/plugin, which links in every plugin of
// plugin.cfg (about 60: Route 53, Azure, Cloud DNS, etcd, Nomad, dnstap,
// tracing, ...), and then calls coremain.Run(). We do the same, but import
// our own list instead of core/plugin. A plugin that is not linked cannot be
// named in a Corefile (CoreDNS refuses to start on an unknown directive), so
// the list is also the set of features a configuration can turn on. Fewer
// plugins give a smaller binary, less code that parses network input or
// talks to outside services, and far fewer dependencies to download and
// compile (no cloud SDKs).
//
// The list covers the Corefile kubeadm writes for cluster DNS (errors,
// health, ready, kubernetes, prometheus, forward, cache, loop, reload,
// loadbalance), plus bind (cairn's node service listens on the node's
// address only), log (query logging) and hosts (static names, e.g. node
// names). Four more plugins are linked because these import them, and
// `coredns -plugins` lists them too: debug and dnstap (imported by forward),
// metadata (by cache, forward, kubernetes and log) and transfer (by
// kubernetes). Like every plugin, they do nothing unless a Corefile names
// them.
//
// The order of execution within a server block does not depend on
// the import order: it is fixed by dnsserver.Directives (upstream's
// generated core/dnsserver/zdirectives.go). To add a plugin, take its import
// path from upstream's core/plugin/zplugin.go, add it below, then run
// go mod tidy and check that go.mod's versions still equal upstream's
// (third_party/README.md).
package main

import (
	// The "dns" server type the plugins register with. coremain imports it
	// too; named here because this file stands in for core/plugin.
	_ "github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"        // bind: the addresses to listen on
	_ "github.com/coredns/coredns/plugin/cache"       // cache: caches answers
	_ "github.com/coredns/coredns/plugin/errors"      // errors: logs errors
	_ "github.com/coredns/coredns/plugin/forward"     // forward: upstream resolvers (/etc/resolv.conf)
	_ "github.com/coredns/coredns/plugin/health"      // health: liveness endpoint (:8080/health)
	_ "github.com/coredns/coredns/plugin/hosts"       // hosts: names from a hosts file or inline
	_ "github.com/coredns/coredns/plugin/kubernetes"  // kubernetes: Service and Pod records
	_ "github.com/coredns/coredns/plugin/loadbalance" // loadbalance: shuffles A/AAAA/MX records
	_ "github.com/coredns/coredns/plugin/log"         // log: query log
	_ "github.com/coredns/coredns/plugin/loop"        // loop: stops on a forwarding loop
	_ "github.com/coredns/coredns/plugin/metrics"     // prometheus: metrics endpoint (:9153)
	_ "github.com/coredns/coredns/plugin/ready"       // ready: readiness endpoint (:8181/ready)
	_ "github.com/coredns/coredns/plugin/reload"      // reload: reloads a changed Corefile
)

func main() {
	coremain.Run()
}
