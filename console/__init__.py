"""The web console at ``/console``: server-rendered pages over the REST API, for tenants and the admin.

Every page calls the same REST API as any other client, through the SDK's ``AsyncClient``, with the
signed-in user's own key; what a user may see is what the API's guard lets that key see. The package
imports ``meterway`` only; ``service/app.py`` adds ``console_handlers(settings)`` to the app.
"""

from console.routes import console_handlers

__all__ = ["console_handlers"]
