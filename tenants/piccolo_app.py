"""The control plane as a Piccolo app: its tables and its migrations."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from tenants.models import TENANT_TABLES

APP_CONFIG = AppConfig(
    app_name="control",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=list(TENANT_TABLES),
)
