"""Earth Engine credentials and project (:class:`EarthEngineConfig`), and the errors a user can act on.

The error family (:class:`EarthEngineError` and its kinds) and :func:`classify_error`, which maps
an Earth Engine failure (HTTP status, error reason, message) to one of them, live here so that the
request builders, the download and the adapter share them without importing ``ee``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import LulcError

__all__ = [
    "EarthEngineError", "CredentialsError", "QuotaError", "PermissionDeniedError", "TransientError", "EmptyCollectionError",
    "EarthEngineConfig", "classify_error", "classify_exception",
]


class EarthEngineError(LulcError):
    """Any Earth Engine failure the user can act on."""


class CredentialsError(EarthEngineError):
    """No usable credentials or Cloud project."""


class QuotaError(EarthEngineError):
    """The project's Earth Engine quota or rate limit is exhausted."""


class PermissionDeniedError(EarthEngineError):
    """The credentials lack access to the project or the dataset."""


class TransientError(EarthEngineError):
    """A failure worth retrying (timeouts, 5xx, 'too many concurrent requests')."""


class EmptyCollectionError(EarthEngineError):
    """No image matches the dates, the AOI and the filters, so there is nothing to composite."""


@dataclass(frozen=True)
class EarthEngineConfig:
    """How to authenticate.

    Credentials are looked up in this order:

    1. a credentials JSON file named by ``[earthengine] service_account_key`` in Streamlit secrets,
       ``EARTHENGINE_SERVICE_ACCOUNT_KEY`` or ``GOOGLE_APPLICATION_CREDENTIALS``. It may hold a
       service-account key (``"type": "service_account"``) or application-default user credentials
       (``"type": "authorized_user"``, written by ``gcloud auth application-default login``);
    2. the credentials stored by ``earthengine authenticate`` (``~/.config/earthengine/credentials``,
       or ``$EE_CONFIG_DIR/credentials``);
    3. gcloud's application-default credentials file
       (``~/.config/gcloud/application_default_credentials.json``, or under ``$CLOUDSDK_CONFIG``).

    Attributes:
        project: Google Cloud project registered for Earth Engine (``EARTHENGINE_PROJECT``); when
            unset, the ``project_id`` or ``quota_project_id`` of the credentials file is used.
        service_account_key: Path of the credentials JSON file of step 1 (the name is historical:
            user credentials are accepted too); ``None`` goes on with steps 2 and 3.
    """

    project: str | None = None
    service_account_key: str | None = None

    @classmethod
    def from_env(cls, secrets: dict | None = None) -> EarthEngineConfig:
        """Read the configuration from Streamlit secrets (``[earthengine]`` table) or the environment."""
        s = (secrets or {}).get("earthengine", {}) if secrets else {}
        project = s.get("project") or os.environ.get("EARTHENGINE_PROJECT")
        key = s.get("service_account_key") or os.environ.get("EARTHENGINE_SERVICE_ACCOUNT_KEY") or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        return cls(project=project, service_account_key=key)

    @property
    def user_credentials_path(self) -> Path:
        """Where ``earthengine authenticate`` stores the user's credentials."""
        return Path(os.environ.get("EE_CONFIG_DIR", Path.home() / ".config" / "earthengine")) / "credentials"

    @property
    def gcloud_adc_path(self) -> Path:
        """Where ``gcloud auth application-default login`` stores application-default credentials."""
        return Path(os.environ.get("CLOUDSDK_CONFIG", Path.home() / ".config" / "gcloud")) / "application_default_credentials.json"

    def credentials_file(self) -> Path | None:
        """The credentials JSON file to use (step 1 or 3 of the lookup), or ``None`` for step 2 or nothing."""
        if self.service_account_key:
            return Path(self.service_account_key)
        if not self.user_credentials_path.exists() and self.gcloud_adc_path.exists():
            return self.gcloud_adc_path
        return None

    def _file_info(self) -> tuple[dict | None, str | None]:
        """(parsed credentials file, problem) of :meth:`credentials_file`."""
        path = self.credentials_file()
        if path is None:
            return None, None
        if not path.exists():
            return None, f"the credentials file {path} does not exist"
        try:
            info = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, f"the credentials file {path} is not readable JSON ({exc})"
        if not isinstance(info, dict):
            return None, f"the credentials file {path} is not a JSON object"
        need = {"service_account": ("client_email", "private_key"), "authorized_user": ("client_id", "client_secret", "refresh_token")}
        kind = info.get("type")
        if kind in need:
            missing = [k for k in need[kind] if not info.get(k)]
            if missing:
                return None, f"the {kind} credentials file {path} lacks {', '.join(missing)}"
        elif kind not in ("external_account", "impersonated_service_account"):
            return None, (f"the credentials file {path} has type {kind!r}; expected a service-account key or "
                          "application-default credentials (gcloud auth application-default login)")
        return info, None

    @property
    def effective_project(self) -> str | None:
        """``project``, else the project named in the credentials file."""
        if self.project:
            return self.project
        info, _ = self._file_info()
        return (info or {}).get("project_id") or (info or {}).get("quota_project_id") or None

    @property
    def credentials_source(self) -> str:
        """Which credentials would be used, in words."""
        path = self.credentials_file()
        if path is not None:
            info, _ = self._file_info()
            kind = (info or {}).get("type", "unknown")
            what = "service-account key" if kind == "service_account" else "application-default credentials"
            return f"{what} {path}"
        if self.user_credentials_path.exists():
            return f"earthengine authenticate credentials {self.user_credentials_path}"
        return "none"

    def problems(self) -> list[str]:
        """What is missing, in words a user can act on (empty when it looks usable)."""
        out = []
        info, problem = self._file_info()
        if problem:
            out.append(problem)
        if not self.effective_project:
            out.append("set EARTHENGINE_PROJECT (or [earthengine] project in .streamlit/secrets.toml) to a Cloud project registered for Earth Engine")
        if self.credentials_file() is None and not self.user_credentials_path.exists():
            out.append("no credentials: run `earthengine authenticate` once, or set GOOGLE_APPLICATION_CREDENTIALS (or "
                       "EARTHENGINE_SERVICE_ACCOUNT_KEY) to a service-account JSON key or to application-default credentials "
                       "from `gcloud auth application-default login`")
        return out

    @property
    def configured(self) -> bool:
        """True when credentials and a project are present (not yet verified with the server)."""
        return not self.problems()


# --- server failures -> errors a user can act on --------------------------------------------------

TRANSIENT_STATUS = {408, 500, 502, 503, 504}
TRANSIENT_REASONS = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "ABORTED", "backendError", "rateLimitExceeded",
                     "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"}
QUOTA_REASONS = {"quotaExceeded", "dailyLimitExceeded", "QUOTA_EXCEEDED"}


def _http_error_fields(exc: BaseException) -> tuple[int | None, str | None, str]:
    """(HTTP status, error reason, message) of an Earth Engine error.

    ``ee.data`` raises ``EEException(message)`` while handling a googleapiclient ``HttpError``, so
    the HTTP status and the JSON error body (``error.status`` such as ``RESOURCE_EXHAUSTED`` and
    ``error.errors[].reason`` / ``error.details[].reason``) are on the exception's context.
    """
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        resp = getattr(cur, "resp", None)
        status = getattr(resp, "status", None) if resp is not None else getattr(cur, "status_code", None)
        if status is not None:
            reason = None
            try:
                body = json.loads(getattr(cur, "content", b"") or b"{}")
                err = body.get("error", {}) if isinstance(body, dict) else {}
                reasons = [d.get("reason") for d in err.get("errors", []) + err.get("details", []) if isinstance(d, dict)]
                reason = next((r for r in reasons if r), None) or err.get("status")
            except (ValueError, TypeError, AttributeError):
                pass
            return int(status), reason, str(exc)
        cur = cur.__cause__ or cur.__context__
    return None, None, str(exc)


def classify_exception(exc: BaseException) -> EarthEngineError:
    """Map an exception of ``ee`` (with its HTTP status and reason when it came from the server) to our errors."""
    status, reason, message = _http_error_fields(exc)
    return classify_error(message, status=status, reason=reason)


_QUOTA_RE = re.compile(r"\bquota\b|rate limit|too many requests", re.I)
_DENIED_RE = re.compile(r"permission|not authorized|not signed up|access denied|\b403\b", re.I)
_TRANSIENT_RE = re.compile(r"too many concurrent|timed out|deadline|\b50[0234]\b|internal error|service unavailable|"
                           r"connection reset|temporarily", re.I)


def classify_error(message: str, *, status: int | None = None, reason: str | None = None) -> EarthEngineError:
    """Map an Earth Engine error to the error a user can act on.

    With an HTTP status (and the error reason of the JSON body), the status decides: 401 ->
    :class:`CredentialsError`; 403 -> :class:`PermissionDeniedError` (or quota reasons); 429 ->
    :class:`QuotaError` when the message or reason names a quota, else :class:`TransientError`
    (rate limits, "too many concurrent aggregations"); 408 and 5xx -> :class:`TransientError`;
    any other status (400 "Total request size ... must be less than or equal to ...", 404 asset
    not found) -> a permanent :class:`EarthEngineError`, never retried. Without a status (client
    errors, network errors) whole words of the message decide.
    """
    quota = QuotaError(f"Earth Engine quota or rate limit reached ({message}); wait and retry, lower the number of "
                       "parallel requests, or use a project with a higher quota tier")
    denied = PermissionDeniedError(f"Earth Engine denied access ({message}); check that the project is registered for "
                                   "Earth Engine and the account has the Earth Engine Resource Viewer role")
    if status is not None:
        if status == 401 or reason == "UNAUTHENTICATED":
            return CredentialsError(f"Earth Engine did not accept the credentials ({message}); authenticate again")
        if reason in QUOTA_REASONS or (status == 429 and _QUOTA_RE.search(message) and "concurrent" not in message.lower()):
            return quota
        if status == 403 or reason == "PERMISSION_DENIED":
            return TransientError(message) if reason in TRANSIENT_REASONS else denied
        if status == 429 or status in TRANSIENT_STATUS or reason in TRANSIENT_REASONS:
            return TransientError(f"Earth Engine is busy (HTTP {status}): {message}")
        hint = ""
        if "request size" in message.lower() or "too large" in message.lower():
            hint = "; request smaller tiles (max_side) or fewer bands"
        return EarthEngineError(f"Earth Engine refused the request (HTTP {status}{', ' + reason if reason else ''}): {message}{hint}")
    if "concurrent" in message.lower():
        return TransientError(message)
    if _QUOTA_RE.search(message):
        return quota
    if _DENIED_RE.search(message):
        return denied
    if _TRANSIENT_RE.search(message):
        return TransientError(message)
    return EarthEngineError(f"Earth Engine error: {message}")
