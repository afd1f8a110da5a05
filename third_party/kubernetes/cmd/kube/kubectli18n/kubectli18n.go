// Package kubectli18n keeps kubectl's message catalogue out of the other
// components' start.
//
// kubectl's command packages translate their help texts in package variables,
// so the first of them to initialise loads the whole catalogue (an embedded .po
// file, zipped and parsed). In the multiplexer every component runs every
// package's initialisers, so each kube-apiserver, kubelet or etcd start paid
// for it: 0.3-1.3 s of clock under TCG for k8s.io/kubectl/pkg/cmd/options alone
// (`make profile-boot`, bench/results/boot-profile.md). Only kubectl shows those
// texts. For every other component this package installs a loader that loads
// nothing, through kubectl's own hook (i18n.SetLoadTranslationsFunc), and the
// texts stay untranslated: gettext returns the English message id.
//
// The hook must be installed before any package calls i18n.T. Go initialises
// packages in import-path order among those whose imports are done, and this
// package's path ("cairn.invalid/...") sorts before every package that
// translates ("k8s.io/..."), so it runs right after the i18n package itself.
package kubectli18n

import (
	"os"
	"path/filepath"

	"k8s.io/kubectl/pkg/util/i18n"
)

func init() {
	if component(os.Args) == "kubectl" {
		return // upstream's lazy loading of the user's language
	}
	if err := i18n.SetLoadTranslationsFunc(func() error { return nil }); err != nil {
		panic("kubectli18n: " + err.Error())
	}
}

// component is the name the multiplexer will run, chosen as main does: the
// binary's name, or the first argument when that name is "kube".
func component(args []string) string {
	if len(args) == 0 {
		return ""
	}
	name := filepath.Base(args[0])
	if name == "kube" && len(args) > 1 {
		return args[1]
	}
	return name
}
