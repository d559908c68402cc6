"""Constructors and imports never raise: the spool on Windows (simulated: a fake msvcrt and
sys.platform), a package without fcntl, tracker folders that cannot be used, odd settings."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
import tomllib
import types
from pathlib import Path

import pytest
from telemetry_client import HelpTracker, TelemetryClient, TelemetryConfig, UsageTracker
from telemetry_client.spool import Spool

from quality.models import LlmUsage, TemplateFeedback
from runs.models import Run
from tests.services import ROOT


class FakeMsvcrt(types.ModuleType):
    """msvcrt.locking as Windows does it: a byte range of a file locked by one holder at a time."""

    LK_UNLCK, LK_NBLCK = 0, 2

    def __init__(self):
        super().__init__("msvcrt")
        self.calls: list[tuple[str, str]] = []
        self.held: set[tuple[int, int]] = set()

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        assert nbytes == 1 and os.lseek(fd, 0, os.SEEK_CUR) == 0
        stat = os.fstat(fd)
        file, name = (stat.st_dev, stat.st_ino), os.readlink(f"/proc/self/fd/{fd}")
        if mode == self.LK_NBLCK:
            self.calls.append(("lock", name))
            if file in self.held:
                raise PermissionError(errno.EACCES, "Permission denied")
            self.held.add(file)
        else:
            assert mode == self.LK_UNLCK and file in self.held
            self.calls.append(("unlock", name))
            self.held.remove(file)


@pytest.fixture
def windows(monkeypatch) -> FakeMsvcrt:
    fake = FakeMsvcrt()
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    monkeypatch.setitem(sys.modules, "fcntl", None)  # an import of it fails, as on Windows
    return fake


def test_on_windows_slots_are_locked_with_msvcrt_and_exclude_each_other(windows, tmp_path):
    first = Spool.claim(tmp_path, 1 << 20)
    second = Spool.claim(tmp_path, 1 << 20)
    assert (first.path.name, second.path.name) == ("slot-0", "slot-1")
    slot_0, slot_1 = str(tmp_path / "slot-0" / "lock"), str(tmp_path / "slot-1" / "lock")
    assert windows.calls == [("lock", slot_0), ("lock", slot_0), ("lock", slot_1)]  # slot-0 was taken

    assert first.append(b'{"n":1}\n')
    first.release()
    assert windows.calls[-1] == ("unlock", slot_0)
    orphans = Spool.orphans(tmp_path, 1 << 20)  # slot-0 is free now, with a record; slot-1 is held
    assert [spool.path.name for spool in orphans] == ["slot-0"]
    assert orphans[0].read(10, 1 << 20)[0] == [b'{"n":1}\n']
    assert windows.calls[-2:] == [("lock", slot_0), ("lock", slot_1)]
    orphans[0].release()
    second.release()
    assert windows.held == set()


def test_on_windows_a_client_records_and_hands_its_spool_on(windows, tmp_path, live_asgi, agent_key):
    offline = TelemetryClient(api_url="", spool_dir=tmp_path)
    with offline.track_run("alpha", "windows", run_id="win-1"):
        pass
    offline.close()
    online = TelemetryClient(api_url=live_asgi, api_key=agent_key, spool_dir=tmp_path)
    assert online.flush(timeout=10)
    online.close()
    # the offline client's slot, then the online one's (the sender's look for orphans finds it held)
    assert [call for call, _ in windows.calls] == ["lock", "unlock", "lock", "lock", "unlock"]
    assert windows.held == set()
    assert Run.objects.get(run_id="win-1").status == "success"


def test_the_package_imports_without_fcntl_and_records_on_windows(tmp_path):
    script = (
        "import sys, types\n"
        "sys.modules['fcntl'] = None  # as on Windows\n"
        "import telemetry_client\n"
        "sys.platform = 'win32'\n"
        "sys.modules['msvcrt'] = types.SimpleNamespace(LK_NBLCK=2, LK_UNLCK=0, locking=lambda fd, mode, nbytes: None)\n"
        f"client = telemetry_client.init(api_url='', spool_dir={str(tmp_path)!r})\n"
        "client.start_run('alpha', 'x')\n"
        "print(client.get_stats()['accepted'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "1\n"), done.stderr
    assert (tmp_path / "slot-0").is_dir()


def test_unusable_tracker_folders_are_logged_once_and_the_server_still_hears(live_asgi, make_client, tmp_path, sdk_logs):
    client = make_client(live_asgi)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    usage = UsageTracker(not_a_folder, memory=client, agent_name="alpha")
    help_log = HelpTracker(not_a_folder / "deeper", memory=client)
    assert sdk_logs.text.count("cannot use the folder") == 2
    assert usage.track_llm_call("docs", "draft", "cheap", "claude-3-5-haiku", 10, 10) is False
    assert help_log.track_query("how do I") is False and help_log.record_feedback("faq-3", good=True) is False
    assert usage.get_stats()["calls"] == 0 and help_log.get_template_confidence("faq-3") == 0.5
    assert sdk_logs.text.count("cannot use the folder") == 2  # not once per call
    assert client.flush(timeout=10)
    assert LlmUsage.objects.get().model == "claude-3-5-haiku" and TemplateFeedback.objects.get().template_id == "faq-3"


def test_odd_settings_are_warnings_not_exceptions(monkeypatch, tmp_path, sdk_logs):
    monkeypatch.setenv("TELEMETRY_SPOOL_MAX_MB", "inf")
    monkeypatch.setenv("TELEMETRY_EXIT_FLUSH_SECONDS", "nan")
    monkeypatch.setenv("TELEMETRY_ENABLED", "maybe")
    config = TelemetryConfig.from_env()
    assert (config.spool_max_bytes, config.exit_flush_timeout, config.enabled) == (256 * 1024 * 1024, 5.0, True)
    assert "TELEMETRY_SPOOL_MAX_MB='inf' is not a number" in sdk_logs.text
    assert "TELEMETRY_ENABLED='maybe' is not true or false" in sdk_logs.text
    client = TelemetryClient(TelemetryConfig(api_url=8000, spool_dir=tmp_path))  # not even a string
    assert client.sender is None and client.start_run("alpha", "x")
    client.close(timeout=0)


def test_the_package_ships_its_types_licence_and_urls():
    client = ROOT / "client"
    project = tomllib.loads((client / "pyproject.toml").read_text())["project"]
    assert (project["license"], project["license-files"]) == ("MIT", ["LICENSE"])
    assert (client / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()  # the copy is the repository's
    assert (client / "telemetry_client" / "py.typed").exists() and "Typing :: Typed" in project["classifiers"]
    assert set(project["urls"]) == {"Homepage", "Documentation", "Source", "Issues"}


def test_settings_that_cannot_work_turn_telemetry_off_instead_of_raising(monkeypatch, sdk_logs):
    client = TelemetryClient("not a config")
    assert client.enabled is False and client.start_run("alpha", "x") and client.flush(timeout=0)
    assert "unusable settings: telemetry is off" in sdk_logs.text

    def homeless():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("TELEMETRY_SPOOL_DIR")
    monkeypatch.setattr(Path, "home", homeless)
    assert TelemetryConfig.from_env().spool_dir.parent == Path(tempfile.gettempdir())
