"""Celery settings derived from Settings, in one place for the API (publisher) and the workers."""

from __future__ import annotations

from typing import Any

from config.settings import Settings

ANALYZE_TASK = "assay.analyze"
SWEEP_TASK = "assay.sweep"
DELIVER_TASK = "assay.webhooks.deliver"
WEBHOOK_SWEEP_TASK = "assay.webhooks.sweep"
RETENTION_TASK = "assay.retention"
UPLOADS_SWEEP_TASK = "assay.uploads.sweep"


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        # Longer than any lease plus queue wait: Redis redelivers unacknowledged messages
        # after this, and a job still running must not start a second time (celery#5935).
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_seconds,
            "unacked_restore_interval": settings.broker_restore_interval_seconds,
            "unacked_restore_throttle": settings.broker_restore_throttle,
        },
        # PostgreSQL holds results; no result backend.
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_default_queue": settings.maintenance_queue,
        "task_create_missing_queues": True,
        "worker_prefetch_multiplier": settings.prefetch_multiplier,
        # After a broker reconnect Celery cuts the prefetch to what the pool holds and restores it as tasks
        # end; a gevent pool counts the greenlets running at that moment (often 0), so the webhook worker was
        # left at a prefetch of 2 for good, polling every 2 s: ~1 message/s after any Redis restart. Nothing
        # here needs the cut: PostgreSQL claims, not the broker, keep a message taken twice from running twice.
        "worker_enable_prefetch_count_reduction": False,
        "worker_send_task_events": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_enable_remote_control": True,
        "enable_utc": True,
        "beat_schedule": {
            "sweep": {
                "task": SWEEP_TASK,
                "schedule": settings.sweep_interval_seconds,
                "options": {"queue": settings.maintenance_queue, "expires": settings.sweep_interval_seconds * 2},
            },
            "retention": {
                "task": RETENTION_TASK,
                "schedule": settings.retention_interval_seconds,
                "options": {"queue": settings.maintenance_queue, "expires": settings.retention_interval_seconds},
            },
            "uploads-sweep": {
                "task": UPLOADS_SWEEP_TASK,
                "schedule": min(60.0, settings.upload_grace_seconds),
                "options": {"queue": settings.maintenance_queue, "expires": 60.0},
            },
            "webhook-sweep": {
                "task": WEBHOOK_SWEEP_TASK,
                "schedule": settings.webhook_sweep_interval_seconds,
                "options": {
                    "queue": settings.maintenance_queue,
                    "expires": settings.webhook_sweep_interval_seconds * 2,
                },
            },
        },
        "beat_schedule_filename": str(settings.var_dir / "celerybeat-schedule"),
    }
