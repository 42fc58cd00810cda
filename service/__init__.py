"""The HTTP gateway: Litestar app, auth, the OpenAI protocol, the CLI."""
