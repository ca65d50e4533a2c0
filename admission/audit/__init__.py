"""`admission-cli audit`: the policy run on what a cluster already runs (architecture §2), with PolicyReports as output."""
