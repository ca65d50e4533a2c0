// etcd, as the etcd binary starts it: etcdmain.Main is the whole of go.etcd.io/etcd's own main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
