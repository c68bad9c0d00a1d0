import subprocess
import sys
from pathlib import Path

import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def test_docker_compose_services_name_real_entry_points():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"web", "worker", "beat", "db", "redis"} <= set(services)

    web_command = services["web"]["command"]
    assert "gunicorn prm.wsgi:application" in web_command
    assert (ROOT / "prm" / "wsgi.py").exists()
    assert "celery -A prm worker" in services["worker"]["command"]
    assert "celery -A prm beat" in services["beat"]["command"]

    from prm import celery_app
    from prm.wsgi import application

    assert celery_app.main == "prm"
    assert callable(application)
    assert "kpis.tasks.recompute_kpis" in {e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()}


def test_production_settings_pass_check_deploy_without_warnings(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "prm.settings",
        "SECRET_KEY": "x9!" + "k" * 60 + "Q7#mZ",
        "ALLOWED_HOSTS": "prm.example.com",
        "DEBUG": "0",
        "PRM_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_debug_is_off_unless_asked_for():
    assert settings.DEBUG is False
