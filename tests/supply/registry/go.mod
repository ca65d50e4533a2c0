// Builds oci-registry for the supply-chain tests (tests/supply/build.sh): go-containerregistry's in-memory registry
// with the OCI 1.1 referrers API on.
module admission.test/supply/registry

go 1.26.0

require github.com/google/go-containerregistry v0.22.1
