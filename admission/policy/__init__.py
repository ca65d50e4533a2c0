"""The policy core: rule catalogue, rules, policy file, engine. Imports no web, HTTP or Kubernetes client."""
