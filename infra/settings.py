"""Every setting of WasteX Stream, read from environment variables with working local defaults.

Secrets are never defaults in code: when `WASTEX_S3_SECRET_KEY` or `WASTEX_POSTGRES_PASSWORD` are not
set, they are generated once and kept in `<state dir>/secrets.env` (mode 0600). The review UI's signing key is
not among them: only the UI reads it (review_ui/signing_key.py).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from infra.runtime_names import RUNTIMES

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _env_int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _env_float(name: str, default: float) -> float:
    raw = _env(name, str(default))
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _env_rate(name: str, default: float) -> float:
    value = _env_float(name, default)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction between 0 and 1, got {value}")
    return value


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _env(name, default).lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _env_serving_runtime() -> str:
    value = _env("WASTEX_SERVING_RUNTIME", "").lower()
    if value and value not in RUNTIMES:
        raise ValueError(f"WASTEX_SERVING_RUNTIME must be empty (the registry's choice) or one of "
                         f"{', '.join(RUNTIMES)}, got {value!r}")
    return value


def _load_or_create_secrets(state_dir: Path) -> dict[str, str]:
    """Local credentials generated on first use, so no password lives in the code."""
    path = state_dir / "secrets.env"
    if path.exists():
        pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        return {key: value for key, value in pairs}
    values = {
        "S3_ACCESS_KEY": "wastex-" + secrets.token_hex(4),
        "S3_SECRET_KEY": secrets.token_urlsafe(24),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.writelines(f"{key}={value}\n" for key, value in values.items())
    return values


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def _kafka_security() -> dict[str, str]:
    """The Kafka authentication settings, refused when they cannot work together."""
    protocol = _env("WASTEX_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise ValueError(f"WASTEX_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}, "
                         f"got {protocol!r}")
    mechanism = _env("WASTEX_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512").upper()
    if mechanism not in KAFKA_SASL_MECHANISMS:
        raise ValueError(f"WASTEX_KAFKA_SASL_MECHANISM must be one of {', '.join(KAFKA_SASL_MECHANISMS)}, "
                         f"got {mechanism!r}")
    username = _env("WASTEX_KAFKA_SASL_USERNAME", "")
    password = os.environ.get("WASTEX_KAFKA_SASL_PASSWORD", "")  # not stripped: spaces may belong to it
    cafile = _env("WASTEX_KAFKA_SSL_CAFILE", "")
    if protocol.startswith("SASL_") and not (username and password):
        raise ValueError(f"WASTEX_KAFKA_SECURITY_PROTOCOL={protocol} needs WASTEX_KAFKA_SASL_USERNAME and "
                         "WASTEX_KAFKA_SASL_PASSWORD: set both (the broker's SCRAM user), or use PLAINTEXT")
    if cafile and protocol != "SASL_SSL":
        raise ValueError(f"WASTEX_KAFKA_SSL_CAFILE is set but WASTEX_KAFKA_SECURITY_PROTOCOL is {protocol}: "
                         "TLS is used only with SASL_SSL; set that protocol or unset the CA file")
    if cafile and not Path(cafile).expanduser().is_file():
        raise ValueError(f"WASTEX_KAFKA_SSL_CAFILE={cafile} is not a readable file: point it at the PEM file "
                         "of the certificate authority that signed the broker's certificate")
    return {"kafka_security_protocol": protocol, "kafka_sasl_mechanism": mechanism,
            "kafka_sasl_username": username, "kafka_sasl_password": password,
            "kafka_ssl_cafile": str(Path(cafile).expanduser()) if cafile else ""}


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    cache_dir: Path
    topic_prefix: str
    image_partitions: int

    kafka_host: str
    kafka_port: int
    kafka_controller_port: int
    kafka_heap: str
    # How every Kafka client authenticates (infra/kafka_security.py turns these into each library's arguments).
    kafka_security_protocol: str  # PLAINTEXT | SASL_PLAINTEXT | SASL_SSL
    kafka_sasl_mechanism: str
    kafka_sasl_username: str
    kafka_sasl_password: str = field(repr=False)
    kafka_ssl_cafile: str  # "": the system's certificate authorities

    minio_host: str
    minio_port: int
    minio_console_port: int
    s3_access_key: str
    s3_secret_key: str
    bucket_images: str
    bucket_datasets: str
    bucket_models: str

    postgres_host: str
    postgres_port: int
    postgres_user: str
    postgres_password: str
    postgres_db: str
    database_url_override: str

    ui_host: str
    ui_port: int
    ui_secure_cookies: bool
    ui_max_upload_bytes: int
    ui_session_idle_s: float  # a session unused this long ends
    ui_session_max_s: float  # a session ends this long after sign-in, however busy
    ui_signin_max_failures: int  # failed sign-ins per account within the window before it is locked
    ui_signin_max_client_failures: int  # the same per client address (higher: many operators behind one NAT)
    ui_signin_window_s: float
    ui_signin_max_lock_s: float  # the longest a lock grows to with repeated failures
    ui_signin_concurrency: int  # password checks (scrypt, about 32 MiB each) running at once
    ui_trusted_proxies: int  # reverse proxies in front of the UI whose X-Forwarded-For is believed
    accuracy_publish_interval_s: float  # how often the UI publishes changed audited accuracy to counts.accuracy
    start_timeout_s: int
    max_image_bytes: int
    max_image_pixels: int
    scoring_batch_size: int
    scoring_batch_wait_ms: int
    scoring_web_port: int
    serving_runtime: str  # "": each model version's registered runtime; else this one for every version
    model_threads: int  # the serving runtime's threads; 0: every usable core (infra.cpu_budget)
    decode_threads: int  # the fetch-and-decode pool of a scoring worker; 0: half the usable cores
    keep_sample_rate: float
    audit_rate: float  # share of in-distribution images (by content hash) kept and queued for an audit answer
    review_rate: float  # share of in-distribution images the trainer calibrates the OOD thresholds to flag
    drifting_review_rate: float  # the same share for the stricter pair scoring applies to drifting cameras
    review_group_distance: float  # cosine distance within which the queue's Groups view puts embeddings together
    # The scoring monitor's drift check per camera (review_ui/scoring_monitor.py, review_ui/drift.py).
    drift_window_s: float  # how far back a camera's images are checked
    drift_min_images: int  # fewer images in the window: no verdict
    drift_max_ks: float  # KS statistic of the window's energies against the model's reference
    drift_max_ood_rate: float  # OOD share a site accepts to review before the camera counts as drifting
    drift_check_s: float  # how often every camera is checked
    delete_delay_s: float
    builder_web_port: int
    # The HTTP ingest (producers/http_ingest.py): its server and how much work it takes on at once.
    ingest_host: str
    ingest_port: int
    ingest_threads: int  # request threads of the WSGI server
    ingest_max_decodes: int  # images checked (decoded) at once; more answer 503 with Retry-After
    ingest_connection_limit: int  # open connections; further ones wait in the listen backlog
    ingest_backlog: int
    image_gc_min_age_s: float
    clock_skew_s: float
    retry_max_delay_s: float
    registry_check_s: float
    worker_stop_timeout_s: float
    count_windows_kept_min: int
    count_max_cameras: int
    version_every_labels: int
    version_every_hours: float
    version_snapshot_depth: int
    # The trainer (training_job.service) and its promotion policy.
    trainer_start_from: str  # production | pretrained
    trainer_backbone: str
    trainer_weights: str  # "imagenet", a weights file, or "none" (random initialisation)
    trainer_head_epochs: int
    trainer_epochs: int
    trainer_minutes: float  # 0: no time budget
    trainer_augmented_views: int
    trainer_batch_size: int
    trainer_trainable_blocks: int
    trainer_site_balance: float  # 0: classes balanced only; 1: each (site, class) group of a class weighs the same
    trainer_background_share: float  # share of augmented views on a generated floor
    trainer_white_balance: float  # augmented views' per-channel gain range, 1 +- this
    trainer_colour_temperature: float  # augmented views' red and blue gains 1 + t and 1 - t, |t| <= this
    trainer_max_attempts: int
    trainer_retry_delay_s: float
    auto_promote: bool
    promote_min_gain: float
    promote_max_class_drop: float
    # Observability: every long-running process serves /metrics; the local Prometheus scrapes them.
    metrics_enabled: bool  # off: no /metrics route, no scrape target, nothing recorded (the benchmark's baseline)
    trainer_metrics_port: int  # the trainer serves no HTTP otherwise: /metrics on this port
    prometheus_host: str
    prometheus_port: int
    prometheus_scrape_s: float
    prometheus_retention: str
    ood_alert_rate: float  # the OodRateHigh alert's threshold, exported by the scoring workers

    @property
    def deployment(self) -> str:
        """The deployment's name, its database's: the `deployment` label of its processes' metrics, which keeps
        deployments that share a Prometheus (a site's, a test's) apart."""
        return self.postgres_db

    @property
    def prometheus_url(self) -> str:
        """Where the System page queries Prometheus: the local one, or an existing server's URL."""
        return _env("WASTEX_PROMETHEUS_URL", f"http://{self.prometheus_host}:{self.prometheus_port}").rstrip("/")

    @property
    def kafka_bootstrap(self) -> str:
        return _env("WASTEX_KAFKA_BOOTSTRAP", f"{self.kafka_host}:{self.kafka_port}")

    @property
    def s3_endpoint(self) -> str:
        """host:port of the S3 API, as the minio client expects it."""
        return _env("WASTEX_S3_ENDPOINT", f"{self.minio_host}:{self.minio_port}")

    @property
    def s3_secure(self) -> bool:
        return _env("WASTEX_S3_SECURE", "false").lower() in {"1", "true", "yes"}

    @property
    def database_url(self) -> str:
        if self.database_url_override:
            return self.database_url_override
        return (
            f"postgresql+psycopg2://{self.postgres_user}:{self.postgres_password}"
            f"@{self.postgres_host}:{self.postgres_port}/{self.postgres_db}"
        )

    @property
    def buckets(self) -> tuple[str, ...]:
        return (self.bucket_images, self.bucket_datasets, self.bucket_models)


def load_settings() -> Settings:
    """Read the environment now (tests and sub-commands may change it between calls)."""
    state_dir = Path(_env("WASTEX_HOME", str(PROJECT_ROOT / ".wastex"))).expanduser().resolve()
    generated = _load_or_create_secrets(state_dir)
    return Settings(
        state_dir=state_dir,
        cache_dir=Path(_env("WASTEX_CACHE_DIR", str(Path.home() / ".cache" / "wastex"))).expanduser(),
        topic_prefix=_env("WASTEX_TOPIC_PREFIX", "wastex."),
        image_partitions=_env_int("WASTEX_IMAGE_PARTITIONS", 6),
        kafka_host=_env("WASTEX_KAFKA_HOST", "127.0.0.1"),
        kafka_port=_env_int("WASTEX_KAFKA_PORT", 9092),
        kafka_controller_port=_env_int("WASTEX_KAFKA_CONTROLLER_PORT", 9093),
        kafka_heap=_env("WASTEX_KAFKA_HEAP", "512m"),
        **_kafka_security(),
        minio_host=_env("WASTEX_MINIO_HOST", "127.0.0.1"),
        minio_port=_env_int("WASTEX_MINIO_PORT", 9000),
        minio_console_port=_env_int("WASTEX_MINIO_CONSOLE_PORT", 9001),
        s3_access_key=_env("WASTEX_S3_ACCESS_KEY", generated["S3_ACCESS_KEY"]),
        s3_secret_key=_env("WASTEX_S3_SECRET_KEY", generated["S3_SECRET_KEY"]),
        bucket_images=_env("WASTEX_BUCKET_IMAGES", "wastex-images"),
        bucket_datasets=_env("WASTEX_BUCKET_DATASETS", "wastex-datasets"),
        bucket_models=_env("WASTEX_BUCKET_MODELS", "wastex-models"),
        postgres_host=_env("WASTEX_POSTGRES_HOST", "127.0.0.1"),
        postgres_port=_env_int("WASTEX_POSTGRES_PORT", 25432),
        postgres_user=_env("WASTEX_POSTGRES_USER", "wastex"),
        postgres_password=_env("WASTEX_POSTGRES_PASSWORD", generated["POSTGRES_PASSWORD"]),
        postgres_db=_env("WASTEX_POSTGRES_DB", "wastex"),
        database_url_override=_env("WASTEX_DATABASE_URL", ""),
        ui_host=_env("WASTEX_UI_HOST", "127.0.0.1"),
        ui_port=_env_int("WASTEX_UI_PORT", 8080),
        ui_secure_cookies=_env("WASTEX_UI_SECURE_COOKIES", "false").lower() in {"1", "true", "yes"},
        ui_max_upload_bytes=_env_int("WASTEX_UI_MAX_UPLOAD_BYTES", 256 * 2**20),
        ui_session_idle_s=_env_float("WASTEX_UI_SESSION_IDLE_S", 12 * 3600.0),
        ui_session_max_s=_env_float("WASTEX_UI_SESSION_MAX_S", 24 * 3600.0),
        ui_signin_max_failures=_env_int("WASTEX_UI_SIGNIN_MAX_FAILURES", 10),
        ui_signin_max_client_failures=_env_int("WASTEX_UI_SIGNIN_MAX_CLIENT_FAILURES", 50),
        ui_signin_window_s=_env_float("WASTEX_UI_SIGNIN_WINDOW_S", 900.0),
        ui_signin_max_lock_s=_env_float("WASTEX_UI_SIGNIN_MAX_LOCK_S", 4 * 3600.0),
        ui_signin_concurrency=_env_int("WASTEX_UI_SIGNIN_CONCURRENCY", 2),
        ui_trusted_proxies=_env_int("WASTEX_UI_TRUSTED_PROXIES", 0),
        accuracy_publish_interval_s=_env_float("WASTEX_ACCURACY_PUBLISH_S", 30.0),
        start_timeout_s=_env_int("WASTEX_START_TIMEOUT", 120),
        max_image_bytes=_env_int("WASTEX_MAX_IMAGE_BYTES", 10 * 2**20),
        max_image_pixels=_env_int("WASTEX_MAX_IMAGE_PIXELS", 40_000_000),
        scoring_batch_size=_env_int("WASTEX_SCORING_BATCH_SIZE", 32),
        scoring_batch_wait_ms=_env_int("WASTEX_SCORING_BATCH_WAIT_MS", 100),
        scoring_web_port=_env_int("WASTEX_SCORING_WEB_PORT", 6066),
        serving_runtime=_env_serving_runtime(),
        model_threads=_env_int("WASTEX_MODEL_THREADS", 0),
        decode_threads=_env_int("WASTEX_DECODE_THREADS", 0),
        keep_sample_rate=float(_env("WASTEX_KEEP_SAMPLE_RATE", "0")),
        delete_delay_s=float(_env("WASTEX_DELETE_DELAY_S", "120")),
        audit_rate=_env_rate("WASTEX_AUDIT_RATE", 0.02),
        review_rate=_env_rate("WASTEX_REVIEW_RATE", 0.05),
        drifting_review_rate=_env_rate("WASTEX_DRIFTING_REVIEW_RATE", 0.3),
        review_group_distance=_env_rate("WASTEX_GROUP_DISTANCE", 0.35),
        drift_window_s=_env_float("WASTEX_DRIFT_WINDOW_S", 3600.0),
        drift_min_images=_env_int("WASTEX_DRIFT_MIN_IMAGES", 50),
        drift_max_ks=_env_rate("WASTEX_DRIFT_MAX_KS", 0.15),
        drift_max_ood_rate=_env_rate("WASTEX_DRIFT_MAX_OOD_RATE", 0.25),
        drift_check_s=_env_float("WASTEX_DRIFT_CHECK_S", 30.0),
        builder_web_port=_env_int("WASTEX_BUILDER_WEB_PORT", 6067),
        ingest_host=_env("WASTEX_INGEST_HOST", "127.0.0.1"),
        ingest_port=_env_int("WASTEX_INGEST_PORT", 8081),
        ingest_threads=_env_int("WASTEX_INGEST_THREADS", 4),
        ingest_max_decodes=_env_int("WASTEX_INGEST_MAX_DECODES", 2),
        ingest_connection_limit=_env_int("WASTEX_INGEST_CONNECTION_LIMIT", 32),
        ingest_backlog=_env_int("WASTEX_INGEST_BACKLOG", 128),
        image_gc_min_age_s=_env_float("WASTEX_IMAGE_GC_MIN_AGE_S", 86_400.0),
        clock_skew_s=_env_float("WASTEX_CLOCK_SKEW_S", 300.0),
        retry_max_delay_s=_env_float("WASTEX_RETRY_MAX_DELAY_S", 30.0),
        registry_check_s=_env_float("WASTEX_REGISTRY_CHECK_S", 30.0),
        worker_stop_timeout_s=_env_float("WASTEX_WORKER_STOP_TIMEOUT_S", 30.0),
        count_windows_kept_min=_env_int("WASTEX_COUNT_WINDOWS_KEPT_MIN", 60),
        count_max_cameras=_env_int("WASTEX_COUNT_MAX_CAMERAS", 10_000),
        version_every_labels=_env_int("WASTEX_VERSION_EVERY_LABELS", 0),
        version_every_hours=float(_env("WASTEX_VERSION_EVERY_HOURS", "0")),
        version_snapshot_depth=_env_int("WASTEX_VERSION_SNAPSHOT_DEPTH", 16),
        trainer_start_from=_env_choice("WASTEX_TRAINER_START_FROM", "production", ("production", "pretrained")),
        trainer_backbone=_env("WASTEX_TRAINER_BACKBONE", "efficientnet_lite0"),
        trainer_weights=_env("WASTEX_TRAINER_WEIGHTS", "imagenet"),
        trainer_head_epochs=_env_int("WASTEX_TRAINER_HEAD_EPOCHS", 40),
        trainer_epochs=_env_int("WASTEX_TRAINER_EPOCHS", 12),
        trainer_minutes=_env_float("WASTEX_TRAINER_MINUTES", 20.0),
        trainer_augmented_views=_env_int("WASTEX_TRAINER_AUGMENTED_VIEWS", 8),
        trainer_batch_size=_env_int("WASTEX_TRAINER_BATCH_SIZE", 64),
        trainer_trainable_blocks=_env_int("WASTEX_TRAINER_TRAINABLE_BLOCKS", 4),
        trainer_site_balance=_env_rate("WASTEX_TRAINER_SITE_BALANCE", 1.0),
        trainer_background_share=_env_rate("WASTEX_TRAINER_BACKGROUND_SHARE", 0.5),
        trainer_white_balance=_env_rate("WASTEX_TRAINER_WHITE_BALANCE", 0.15),
        trainer_colour_temperature=_env_rate("WASTEX_TRAINER_COLOUR_TEMPERATURE", 0.3),
        trainer_max_attempts=_env_int("WASTEX_TRAINER_MAX_ATTEMPTS", 3),
        trainer_retry_delay_s=_env_float("WASTEX_TRAINER_RETRY_DELAY_S", 30.0),
        auto_promote=_env("WASTEX_AUTO_PROMOTE", "true").lower() in {"1", "true", "yes"},
        promote_min_gain=_env_float("WASTEX_PROMOTE_MIN_GAIN", 0.0),
        promote_max_class_drop=_env_float("WASTEX_PROMOTE_MAX_CLASS_DROP", 0.05),
        metrics_enabled=_env("WASTEX_METRICS", "true").lower() in {"1", "true", "yes"},
        trainer_metrics_port=_env_int("WASTEX_TRAINER_METRICS_PORT", 6068),
        prometheus_host=_env("WASTEX_PROMETHEUS_HOST", "127.0.0.1"),
        prometheus_port=_env_int("WASTEX_PROMETHEUS_PORT", 9090),
        prometheus_scrape_s=_env_float("WASTEX_PROMETHEUS_SCRAPE_S", 5.0),
        prometheus_retention=_env("WASTEX_PROMETHEUS_RETENTION", "7d"),
        ood_alert_rate=_env_rate("WASTEX_OOD_ALERT_RATE", 0.3),
    )


@cache
def settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
