"""Endpoints and deployments (issue 14): an endpoint is a durable name with an owner, a kind, an auth mode and
traffic and mirror weights over its deployments; a deployment says which model serves behind it.

``tables`` holds the rows (migration 0006); ``rules`` checks traffic and mirror weights; ``service`` is the
management API the routes in ``service/routes/endpoints.py`` call. Invocation through an endpoint (routing,
mirroring, endpoint keys) and dedicated capacity are the issue's next steps.
"""
