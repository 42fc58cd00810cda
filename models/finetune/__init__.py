"""Tenant fine-tunes: uploads validated against their base, stored content-addressed, served from the pool.

Public API (the rest is private to the package)::

    catalog.tenant_models(session, tenant, *, catalog=None) -> list[ModelSpec]
    catalog.resolve(session, model_id, principal, *, catalog=None) -> ModelSpec | None
    fine_tunes.FineTuneCatalog(sessions, store, catalog_by_id, *, limits=None, prices=None)
        .visible, .find, .spec_for_pool (its routes: service/routes/fine_tunes.py)
    service.FineTuneService  — create / list / get / delete, scoped to the caller's tenant
    uploads.UploadSessions   — resumable upload sessions

The client side (``meterway models upload``) is the SDK's ``Client.fine_tunes.upload``
(meterway/sdk/_resources/fine_tunes.py). See README.md beside this file for the storage layout and the upload protocol.
"""
