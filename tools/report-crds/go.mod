// The PolicyReport CRDs the chart can install (charts/admission/files/report-crds/), pinned to the Go modules that
// define them. fetch.sh downloads them through the module proxy (go.sum checks them) and copies the YAML; nothing
// here is built. To move to newer CRDs: change a version here, run fetch.sh, and commit the copies with go.sum.
module admission.tools/report-crds

go 1.26.0

require (
	// openreports.io/v1alpha1 Report and ClusterReport (config/crd/)
	github.com/openreports/reports-api v0.2.1
	// wgpolicyk8s.io PolicyReport and ClusterPolicyReport (policy-report/crd/v1alpha2/); the module has no tags
	sigs.k8s.io/wg-policy-prototypes v0.0.0-20241007222821-25056e1f3eb5
)
