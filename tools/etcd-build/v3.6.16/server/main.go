// etcd server v3.6.16, built from the released module by scripts/etcd-go.sh.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
