"""Secrets encrypted at rest: vendor request header values (docs/hardening.md, "Secrets at rest").

Values are Fernet tokens (the ``cryptography`` package: AES-128-CBC with HMAC-SHA256, a random
IV and a timestamp per value) under ``settings.FIELD_ENCRYPTION_KEYS``: the first key encrypts,
every key decrypts (``MultiFernet``), so a key is rotated by putting the new one first, running
``manage.py reencrypt_secrets`` and then dropping the old one.

``EncryptedValuesJSONField`` is a JSON object whose keys are stored as they are (header names stay
readable, in the database and in the admin) and whose values are stored as tokens. In Python the
values are plain text: decrypted when a row is read, encrypted whenever one is written — ``save()``,
``update()``, ``bulk_create()`` and ``bulk_update()`` alike, since they all go through the field's
``get_prep_value``. A stored value that no key decrypts (a wrong or missing key, a damaged value)
does not make reading the row fail: it is read as ``UnreadableSecret``, which keeps the stored
token (saving the row writes it back unchanged, so putting the right key back recovers it) and
which ``issuance.vendors`` refuses to send (the unit fails like any vendor failure, 8003).
"""

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models.fields.json import KeyTransform


class UnreadableSecret(str):
    """A stored secret that none of FIELD_ENCRYPTION_KEYS decrypts. Its text is the token as
    stored (ciphertext, never the secret); it is written back as it is and never sent."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UnreadableSecret(<cannot be decrypted with FIELD_ENCRYPTION_KEYS>)"


@functools.lru_cache(maxsize=8)
def _multi_fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _fernet() -> MultiFernet:
    """The keys of the current settings (read on every call, so ``override_settings`` works)."""
    keys = tuple(settings.FIELD_ENCRYPTION_KEYS)
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty: secrets cannot be encrypted")
    return _multi_fernet(keys)


def secret_encrypt(text: str) -> str:
    """A token of ``text`` under the first key."""
    return _fernet().encrypt(text.encode("utf-8")).decode("ascii")


def secret_decrypt(token: str) -> str:
    """The text of a token under any of the keys; ``InvalidToken`` when none decrypts it."""
    if not isinstance(token, str):
        raise InvalidToken
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise InvalidToken from None


def secret_read(token) -> str:
    """The text of a stored value, or ``UnreadableSecret`` (the token) when no key decrypts it."""
    try:
        return secret_decrypt(token)
    except InvalidToken:
        return UnreadableSecret(token if isinstance(token, str) else "")


def unreadable_names(values: dict | None) -> list[str]:
    """The keys of ``values`` whose stored value could not be decrypted."""
    return [str(name) for name, value in (values or {}).items() if isinstance(value, UnreadableSecret)]


class EncryptedValuesJSONField(models.JSONField):
    """A JSON object ``{name: text}``: names stored readable, every value a Fernet token.

    Not for lookups on the values (a token never equals the text, and two tokens of one text
    differ). ``dumpdata`` writes the values decrypted, like ``export_catalogue --include-secrets``.
    """

    description = "A JSON object whose values are encrypted at rest"

    def get_prep_value(self, value):
        if isinstance(value, dict):
            value = {
                str(name): item if isinstance(item, UnreadableSecret) else secret_encrypt(str(item))
                for name, item in value.items()
            }
        return super().get_prep_value(value)

    def from_db_value(self, value, expression, connection):
        value = super().from_db_value(value, expression, connection)
        if isinstance(value, dict) and not isinstance(expression, KeyTransform):
            value = {name: secret_read(item) for name, item in value.items()}
        return value
