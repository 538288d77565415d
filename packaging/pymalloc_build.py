"""The PEP 517 backend of pyproject.toml: maturin, asked for a manylinux wheel.

maturin's own hook builds ``pip wheel .`` / ``pip install .`` with ``--compatibility off``,
which tags the wheel ``linux_x86_64`` ("this machine only") and skips the auditwheel check.
This hook passes ``--compatibility pypi`` instead: maturin checks what the binary and the
library link against the manylinux policy and tags the wheel with the oldest
``manylinux_2_X`` it satisfies, so the wheel says which Linux machines it runs on. Build
arguments given with ``-C maturin.build-args=...`` or ``MATURIN_PEP517_ARGS`` win.
Every other hook is maturin's, unchanged.
"""

import os

from maturin import (  # noqa: F401 (re-exported PEP 517 hooks)
    build_editable,
    build_sdist,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_wheel,
)
from maturin import build_wheel as _maturin_build_wheel

DEFAULT_ARGS = "--compatibility pypi"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    settings = dict(config_settings or {})
    given = "maturin.build-args" in settings or "build-args" in settings
    if not given and not os.environ.get("MATURIN_PEP517_ARGS"):
        settings["maturin.build-args"] = DEFAULT_ARGS
    return _maturin_build_wheel(wheel_directory, settings, metadata_directory)
