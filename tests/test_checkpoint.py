"""Checkpoint files: atomic writes, and loading that never runs code from the file."""

import pytest
import torch

from go2_sevpo.training.checkpoint import atomic_save, load_file
from go2_sevpo.utils.errors import CheckpointError

RAN = []


def _mark_ran():
    RAN.append(True)


class CodeOnLoad:
    """A pickle that calls a function when unpickled: what a malicious shared run folder would hold."""

    def __reduce__(self):
        return (_mark_ran, ())


def test_plain_payload_round_trips(tmp_path):
    payload = {"step": 3, "history": [{"success_rate": 0.5}], "rng": torch.get_rng_state(), "name": "sevpo"}
    atomic_save(payload, tmp_path / "a.pt")
    loaded = load_file(tmp_path / "a.pt")
    assert loaded["step"] == 3 and loaded["history"] == payload["history"] and torch.equal(loaded["rng"], payload["rng"])
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_file_that_needs_unpickling_code_is_refused(tmp_path):
    torch.save({"x": CodeOnLoad()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_file(tmp_path / "evil.pt")
    assert not RAN  # nothing from the file was executed


def test_truncated_file_is_one_error(tmp_path):
    atomic_save({"w": torch.zeros(1000)}, tmp_path / "a.pt")
    data = (tmp_path / "a.pt").read_bytes()
    (tmp_path / "a.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_file(tmp_path / "a.pt")
