package kubectli18n

import "testing"

func TestComponentIsChosenAsMainChoosesIt(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"/usr/bin/kube", "kubectl", "get", "pods"}, "kubectl"},
		{[]string{"/usr/bin/kubectl", "get", "pods"}, "kubectl"},
		{[]string{"/usr/bin/kube", "kube-apiserver"}, "kube-apiserver"},
		{[]string{"kube"}, "kube"},
		{nil, ""},
	} {
		if got := component(c.args); got != c.want {
			t.Errorf("component(%q) = %q, want %q", c.args, got, c.want)
		}
	}
}
