"""Building the service for a Lambda container (once per cold start), or using one handed in
by the local runner and the tests (`use_service`)."""
from __future__ import annotations

import threading

from .config import Settings, secret
from .db.connect import get_database
from .service import TrainingFileService

_service: TrainingFileService | None = None
_lock = threading.Lock()


def _database_url() -> str:
    url = secret("DATABASE_URL") or secret("LORAFILES_DATABASE_URL")
    if not url:
        raise RuntimeError("set DATABASE_URL or LORAFILES_DATABASE_URL_SSM")
    return url


def _starter(settings: Settings):
    if not settings.state_machine_arn:
        return None
    from .pipeline.aws import StepFunctionsStarter

    return StepFunctionsStarter(settings.state_machine_arn)


def get_service() -> TrainingFileService:
    global _service
    with _lock:
        if _service is None:
            settings = Settings()
            _service = TrainingFileService(get_database(_database_url()), settings.store(), settings,
                                           _starter(settings))
        return _service


def use_service(service: TrainingFileService | None) -> None:
    """Make every handler in this process use `service` (local runs and tests)."""
    global _service
    with _lock:
        _service = service
