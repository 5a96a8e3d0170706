"""Celery tasks. Importing this package loads no model: engines load inside the worker process."""
