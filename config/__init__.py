"""Configuration: the one settings object, logging and Celery settings. Imports nothing of ours."""

from config.settings import Settings, SettingsError, get_settings

__all__ = ["Settings", "SettingsError", "get_settings"]
