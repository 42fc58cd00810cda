"""HTTP plumbing: the single error mapping, request ids and access logs."""
