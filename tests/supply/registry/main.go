// oci-registry: go-containerregistry's in-memory registry (pkg/registry) with the OCI 1.1 referrers API
// (GET /v2/<name>/referrers/<digest>) on, served on loopback for the supply-chain tests. Everything it stores is
// lost when it exits. Usage: oci-registry -addr 127.0.0.1:PORT
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5000", "host:port to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "oci-registry: %v\n", err)
		os.Exit(1)
	}
	// Printed once the socket accepts connections, so a caller can wait for this line instead of polling.
	fmt.Printf("listening on %s\n", ln.Addr())
	server := &http.Server{
		Handler:           registry.New(registry.WithReferrersSupport(true)), // logs each request on stderr
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Fatal(server.Serve(ln))
}
