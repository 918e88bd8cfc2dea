package manifests

import (
	"fmt"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func TestScratch(t *testing.T) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), "overlays/redis-dev")
	if err != nil {
		t.Fatal(err)
	}
	y, _ := m.AsYaml()
	fmt.Println(string(y))
}
