"""The HTTP API: Flask app factory (app.factory), blueprints, auth, validation, OpenAPI. Never imports torch,
HTTP clients or model code; `app.wsgi` is gunicorn's entry point."""
