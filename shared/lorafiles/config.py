"""Settings from the environment, read in one place."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .db.connect import default_home
from .domain.enriched import EnrichedLimits

LOCAL_OWNER = "00000000-0000-4000-8000-00000000a11c"  # the CLI's local user (no Supabase auth locally)


def secret(name: str) -> str | None:
    """`$NAME`, else the SSM SecureString named by `$NAME_SSM` (how Lambda gets secrets)."""
    if os.environ.get(name):
        return os.environ[name]
    parameter = os.environ.get(f"{name}_SSM")
    if not parameter:
        return None
    from aws_lambda_powertools.utilities import parameters

    return parameters.get_parameter(parameter, decrypt=True)  # cache: POWERTOOLS_PARAMETERS_MAX_AGE


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None


@dataclass
class Settings:
    home: Path = field(default_factory=default_home)
    storage: str = field(default_factory=lambda: os.environ.get("LORAFILES_STORAGE", "local"))
    storage_root: Path | None = field(
        default_factory=lambda: Path(os.environ["LORAFILES_STORAGE_ROOT"]) if os.environ.get("LORAFILES_STORAGE_ROOT") else None)
    s3_endpoint_url: str | None = field(default_factory=lambda: os.environ.get("LORAFILES_S3_ENDPOINT_URL") or None)
    s3_region: str | None = field(default_factory=lambda: os.environ.get("LORAFILES_S3_REGION") or None)
    bucket_conversations: str = field(
        default_factory=lambda: os.environ.get("LORAFILES_S3_BUCKET_CONVERSATIONS", "conversation-files"))
    bucket_training: str = field(default_factory=lambda: os.environ.get("LORAFILES_S3_BUCKET_TRAINING", "training-files"))
    supabase_url: str | None = field(default_factory=lambda: os.environ.get("SUPABASE_URL") or None)
    # The deployment's default training policy (a create/add request may override any field).
    # Default target: the app's own trainer, Mistral-7B-Instruct-v0.2 with 2048-token sequences.
    target_model: str = field(default_factory=lambda: os.environ.get("LORAFILES_TARGET_MODEL", "mistral-7b-instruct-v0.2"))
    max_length: int | None = field(default_factory=lambda: _int("LORAFILES_MAX_LENGTH", 0) or None)
    over_length: str = field(default_factory=lambda: os.environ.get("LORAFILES_OVER_LENGTH", "drop_turn"))
    min_quality: float | None = field(
        default_factory=lambda: float(os.environ["LORAFILES_MIN_QUALITY"]) if os.environ.get("LORAFILES_MIN_QUALITY") else None)
    fix_literal_escapes: bool = field(
        default_factory=lambda: os.environ.get("LORAFILES_FIX_LITERAL_ESCAPES", "true").lower() not in ("0", "false", "no"))
    batch_size: int = field(default_factory=lambda: _int("LORAFILES_BATCH_SIZE", 10))
    map_concurrency: int = field(default_factory=lambda: _int("LORAFILES_MAP_CONCURRENCY", 4))
    read_concurrency: int = field(default_factory=lambda: _int("LORAFILES_READ_CONCURRENCY", 8))
    signed_url_ttl: int = field(default_factory=lambda: _int("LORAFILES_SIGNED_URL_TTL", 3600))
    job_timeout_seconds: int = field(default_factory=lambda: _int("LORAFILES_JOB_TIMEOUT_SECONDS", 1800))
    state_machine_arn: str | None = field(default_factory=lambda: os.environ.get("LORAFILES_STATE_MACHINE_ARN") or None)
    # limits on one enriched file (issue 9): over any of them the conversation is refused with a reason
    max_enriched_bytes: int = field(
        default_factory=lambda: _int("LORAFILES_MAX_ENRICHED_BYTES", EnrichedLimits.max_bytes))
    max_pairs_per_conversation: int = field(
        default_factory=lambda: _int("LORAFILES_MAX_PAIRS_PER_CONVERSATION", EnrichedLimits.max_pairs))
    max_text_chars: int = field(default_factory=lambda: _int("LORAFILES_MAX_TEXT_CHARS", EnrichedLimits.max_text_chars))

    @property
    def enriched_limits(self) -> EnrichedLimits:
        return EnrichedLimits(max_bytes=self.max_enriched_bytes, max_pairs=self.max_pairs_per_conversation,
                              max_text_chars=self.max_text_chars)

    def default_policy(self, **overrides: object):
        """The deployment's training policy, with a request's fields laid over it (validated)."""
        from .domain.exports import TrainingPolicy
        from .tokens import canonical_model_id, default_max_length

        model = canonical_model_id(str(overrides.get("target_model") or self.target_model))
        fields = {"target_model": model, "max_length": self.max_length or default_max_length(model),
                  "over_length": self.over_length, "min_quality": self.min_quality,
                  "fix_literal_escapes": self.fix_literal_escapes}
        fields.update({k: v for k, v in overrides.items() if k != "target_model"})
        return TrainingPolicy(**fields)

    @property
    def local_storage_root(self) -> Path:
        return self.storage_root or self.home / "storage"

    def store(self):
        """The configured ObjectStore adapter."""
        from .storage import make_store

        if self.storage == "local":
            return make_store("local", root=self.local_storage_root)
        if self.storage == "s3":
            # Supabase Storage's S3 endpoint needs its own access keys; AWS S3 uses the role.
            keys = {"access_key": secret("LORAFILES_S3_ACCESS_KEY_ID"),
                    "secret_key": secret("LORAFILES_S3_SECRET_ACCESS_KEY")} if self.s3_endpoint_url else {}
            return make_store("s3", endpoint_url=self.s3_endpoint_url, region=self.s3_region, **keys,
                              bucket_map={"conversation-files": self.bucket_conversations,
                                          "training-files": self.bucket_training})
        if self.storage == "supabase":
            return make_store("supabase", url=self.supabase_url, key=secret("SUPABASE_SERVICE_ROLE_KEY"))
        raise ValueError(f"LORAFILES_STORAGE={self.storage!r}: expected local, s3 or supabase")
