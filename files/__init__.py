"""Files and OpenAI's Uploads API: tenant-private blobs on disk, built from parts a client sends in any order.

``store.FileStore`` keeps each file under ``<store>/.files/<id>`` with its metadata beside it (never in the
database); ``uploads.Uploads`` is OpenAI's Uploads API (create, add part, complete, cancel) that produces
them. The HTTP routes are in ``service/routes/uploads.py`` and ``service/routes/files.py`` (OpenAI's Files API).
"""
