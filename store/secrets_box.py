"""Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) under keys from settings, with key rotation.

`ASSAY_SECRETS_KEYS` lists Fernet keys, newest first: the first encrypts, every one decrypts
(cryptography's MultiFernet). Rotating the key without downtime: deploy with the new key first and
the old one second, run `python -m store.cli secrets reencrypt` (every row re-encrypted under the new
key, chunk by chunk, while the service runs), then drop the old key.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from config.settings import SettingsError


class SecretsKeyError(SettingsError):
    """No usable key: what the operator must set is in the message."""


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise SecretsKeyError(
                "ASSAY_SECRETS_KEYS is not set: it holds the Fernet key(s) that encrypt webhook signing secrets "
                "(make run writes a development key to var/secrets-key; generate one with "
                "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
            )
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        except ValueError as exc:
            raise SecretsKeyError(f"ASSAY_SECRETS_KEYS holds a key that is not a Fernet key: {exc}") from None

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretsKeyError("a stored secret does not decrypt with any key in ASSAY_SECRETS_KEYS") from None

    def reencrypt(self, token: str) -> str:
        """The same secret under the first (newest) key."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretsKeyError("a stored secret does not decrypt with any key in ASSAY_SECRETS_KEYS") from None
