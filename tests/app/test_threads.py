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
    assert (args.baseline, args.vittle, args.vittle_l, args.device) == ("org/base", "org/vittle-f", None, "cuda")
    assert app_main.parse_args(["--vittle", "here"]).vittle == "here"
    monkeypatch.delenv("VITTLE_BASELINE")
    from vittle.app.config import ServiceConfig

    assert app_main.parse_args([]).baseline == ServiceConfig().baseline


def test_auth_protects_the_page_and_the_api_and_mcp_needs_its_package(app_main, capsys, free_port, service):
    import importlib.util

    import httpx
    import pytest
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    with pytest.raises(SystemExit):
        app_main.parse_args(["--auth", "nopassword"])
    assert "auth must look like USER:PASSWORD" in capsys.readouterr().err
    if importlib.util.find_spec("mcp") is None:
        with pytest.raises(SystemExit):
            app_main.parse_args(["--mcp"])
        assert "pip install 'gradio[mcp]'" in capsys.readouterr().err
    args = app_main.parse_args(["--auth", "ada:s3cret", "--port", str(free_port)])
    assert app_main.launch_options(args)["auth"] == ("ada", "s3cret") and "mcp_server" not in app_main.launch_options(args)
    _, demo = app_main.build(args, service)
    demo.launch(prevent_thread_lock=True, quiet=True, **app_main.launch_options(args))
    try:
        url = f"http://127.0.0.1:{free_port}/"
        assert httpx.get(url + "config", timeout=10).status_code == 401  # the app's config (and so the API) is closed
        login_page = httpx.get(url, timeout=10).text
        assert '"auth_required": true' in login_page or '"auth_required":true' in login_page
        assert "/run" not in login_page and "the four answers" not in login_page  # no endpoint, no docstring before login
        assert '"named_endpoints": {}' in login_page
        with pytest.raises(AuthenticationError):
            Client(url, verbose=False)
        client = Client(url, auth=("ada", "s3cret"), verbose=False)
        assert "/run" in client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        with httpx.Client(base_url=url, timeout=10) as browser:  # logged in, the page describes the API as before
            assert browser.post("login", data={"username": "ada", "password": "s3cret"}).status_code == 200
            assert '"/run"' in browser.get("").text
    finally:
        demo.close()
