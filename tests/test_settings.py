"""Settings are declared once (runtime/settings.py): every field names its variable,
and every variable is read by load_settings. Importing modules has no side effects."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_declares_its_variable_once() -> None:
    names = [f.metadata.get("env") for f in dataclasses.fields(Settings)]
    assert None not in names, "a setting without an environment variable"
    assert len(names) == len(set(names))


def test_invitation_ttl_is_read_from_the_environment(tmp_path: Path) -> None:
    # It used to be silently ignored: the default was declared, the variable never read.
    settings = load_settings({"DATA_DIR": str(tmp_path), "INVITATION_TTL_SECONDS": "600"})
    assert settings.invitation_ttl_seconds == 600


def test_every_variable_reaches_its_setting(tmp_path: Path) -> None:
    samples = {int: "7", float: "1.5", str: "x"}
    in_range = {"wall_thickness_samples": "700"}  # settings whose values are bounded
    for field in dataclasses.fields(Settings):
        kind = type(field.default) if field.default is not dataclasses.MISSING else None
        if kind not in samples or field.name in ("data_dir",):
            continue
        sample = in_range.get(field.name, samples[kind])
        settings = load_settings({"DATA_DIR": str(tmp_path), field.metadata["env"]: sample})
        assert str(getattr(settings, field.name)) == sample, field.name


def test_the_wall_check_rays_are_bounded(tmp_path: Path) -> None:
    """Each ray's wall goes into the analysis child's result, which is bounded: far more
    rays once made every analysis end "stopped unexpectedly" (the result cut short)."""
    for bad in ("0", "99", "20001", "1e6", "many"):
        with pytest.raises(SettingsError, match="WALL_THICKNESS_SAMPLES"):
            load_settings({"DATA_DIR": str(tmp_path), "WALL_THICKNESS_SAMPLES": bad})


def test_imports_create_no_files_and_hash_nothing(tmp_path: Path) -> None:
    code = (
        "import time, argon2\n"
        "calls = []\n"
        "real = argon2.PasswordHasher.hash\n"
        "argon2.PasswordHasher.hash = lambda *a, **k: calls.append(1) or real(*a, **k)\n"
        "import server, storage.db, domain.passwords, web.app\n"
        "assert not calls, 'an Argon2 hash at import'\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert list(tmp_path.iterdir()) == [], "importing created files in the working directory"
