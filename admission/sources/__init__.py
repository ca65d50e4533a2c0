"""Source adapters: the only code that knows input formats. Each turns input into list[Workload]."""
