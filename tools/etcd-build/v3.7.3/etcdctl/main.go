// etcdctl v3.7.3, built from the released module by scripts/etcd-go.sh
// (the same call as etcdctl/main.go of that release).
package main

import "go.etcd.io/etcd/etcdctl/v3/ctlv3"

func main() { ctlv3.MustStart() }
