"""The audit log: every management action (who, what, when, from where, before → after), append-only.

Imports ``meterway`` only; the HTTP layer records into it (``service.audit_trail``) and serves it at
``GET /v1/audit``.
"""
