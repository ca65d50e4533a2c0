"""What a cluster says, for the webhook and the audit alike: the API clients and paging (api.py), LimitRange
defaults (limits.py), verified owner chains and pull secrets (cluster.py). Imports nothing of the faces."""
