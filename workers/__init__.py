"""Worker processes: the Celery app entry point, bootstrap (model preload) and launcher."""
