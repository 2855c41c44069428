"""Process settings of the pipeline's processes (dmic_core.runtime)."""

from __future__ import annotations

import platform

import pytest

from dmic_core.runtime import configure_allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_allocator_thresholds_apply_on_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert configure_allocator() is True


def test_a_person_s_own_malloc_settings_win(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert configure_allocator() is False
