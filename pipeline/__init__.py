"""How a job moves: the worker's batch (claim, run, write), the one job-finished path, recovery sweeps,
retention and webhook delivery. Plain functions and small classes, no Celery: tasks/ wraps them.
"""
