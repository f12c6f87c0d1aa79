"""app.py's settings: threads, and models chosen by environment variables."""

import pytest
import torch


def test_threads_auto_is_half_the_cores_and_blas_runs_on_one(app_main, monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    before = torch.get_num_threads()
    with threadpool_limits(None):  # numpy's BLAS threads are restored afterwards
        try:
            monkeypatch.setattr("os.cpu_count", lambda: 6)
            assert app_main.configure_threads(0) == 3 and torch.get_num_threads() == 3
            assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
            monkeypatch.setattr("os.cpu_count", lambda: 1)
            assert app_main.configure_threads(0) == 1
            assert app_main.configure_threads(2) == 2 and torch.get_num_threads() == 2
        finally:
            torch.set_num_threads(before)


def test_negative_threads_are_refused(app_main, capsys):
    with pytest.raises(SystemExit):
        app_main.parse_args(["--threads", "-1"])
    assert "vittle demo: error: threads=-1 must be 0 (auto) or positive" in capsys.readouterr().err


def test_a_space_chooses_its_models_through_environment_variables(app_main, monkeypatch):
    """A Gradio-SDK Space cannot pass flags; its variables set the models and the device, and
    flags still win."""
    monkeypatch.setenv("VITTLE_BASELINE", "org/base")
    monkeypatch.setenv("VITTLE_VITTLE", "org/vittle-f")
    monkeypatch.setenv("VITTLE_VITTLE_L", "none")
    monkeypatch.setenv("VITTLE_DEVICE", "cuda")
    args = app_main.parse_args([])
    assert (args.baseline, args.vittle, args.vittle_l, args.device) == ("org/base", "org/vittle-f", "none", "cuda")
    assert app_main.parse_args(["--vittle", "here"]).vittle == "here"
    monkeypatch.delenv("VITTLE_BASELINE")
    from app.config import ServiceConfig

    assert app_main.parse_args([]).baseline == ServiceConfig().baseline
