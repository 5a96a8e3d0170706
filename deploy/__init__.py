"""Deployment files, and deploy.local: the development/test launcher behind `make run` and `make test`."""
