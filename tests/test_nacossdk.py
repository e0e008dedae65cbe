"""The SDK loaded without what a run never uses (KMS config encryption, aiohttp), each stand-in
loading the real module on first use. Every check runs in a fresh interpreter: what a process
imported is the thing under test."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from conftest import run_cli

# the real modules a run must not load: KMS (its SDK, Tea runtime, pycryptodome), aiohttp, aiofiles
HEAVY = ("alibabacloud_kms20160120", "Tea", "Crypto", "aiohttp", "v2.nacos.config.encryption.kms_client", "aiofiles")
LOADED = textwrap.dedent(f"""
    import sys
    from higress_init.store.nacos.sdk import Deferred
    def loaded():
        return sorted(m for m in {HEAVY!r} if m in sys.modules and not isinstance(sys.modules[m], Deferred))
""")


def _python(code: str, env: dict | None = None) -> list[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "CONFIG_STORAGE"))}
    result = subprocess.run([sys.executable, "-c", LOADED + textwrap.dedent(code)], env={**full, **(env or {})},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_the_sdk_loads_without_kms_and_aiohttp():
    out = _python("""
        from higress_init.store.nacos import sdk as nacos_sdk
        sdk = nacos_sdk.load()
        from v2.nacos.config.nacos_config_service import NacosConfigService
        import gc
        # what loading made is out of the collector's sight: a full collection walks none of it
        print(loaded(), sdk.NacosConfigService is NacosConfigService, gc.get_freeze_count() > 20000,
              len(gc.get_objects()) < 1000)
    """)
    assert out == ["[] True True True"]


def test_a_warm_nacos_rerun_loads_neither(rnacos, tmp_path, fast_env):
    node = rnacos(auth=True)
    env = dict(fast_env, **node.client_env(), NACOS_WAIT_TIMEOUT="30s")
    volumes = tmp_path / "v"
    run_cli("run", volumes=volumes, env=env, check=True)
    out = _python(f"""
        from higress_init.cli import main as cli
        rc = cli.main(["run", "--volumes", {str(volumes)!r}])
        print(rc, loaded())
    """, env)
    assert out[-1] == "0 []", out
    assert any("gRPC calls" in line for line in out)  # the SDK did read the store


def test_aiohttp_is_loaded_in_full_when_the_sdk_uses_it(tmp_path):
    """The SDK's HTTP agent (its password login, its address-server lookup) still works: it gets
    the real aiohttp on first use. Asked here of a local HTTP server."""
    out = _python("""
        import asyncio, http.server, threading
        from higress_init.store.nacos import sdk
        sdk.load()
        from v2.nacos.transport.http_agent import HttpAgent

        class Answer(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b"pong")
            def log_message(self, *args):
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(loaded())
        import logging
        agent = HttpAgent(logging.getLogger("sdk"), None, 5)
        body, err = asyncio.run(agent.request(f"http://127.0.0.1:{server.server_port}/ping", "GET"))
        import aiohttp
        print(body, err, loaded(), type(sys.modules["aiohttp"]).__name__, aiohttp.ClientSession.__module__)
        server.shutdown()
    """)
    assert out == ["[]", "b'pong' None ['aiohttp'] module aiohttp.client"]


def test_the_sdks_file_cache_still_works_when_used(tmp_path):
    """The SDK's local config cache (off in every run) gets the real aiofiles on first use."""
    out = _python(f"""
        import asyncio, logging
        from higress_init.store.nacos import sdk
        sdk.load()
        from v2.nacos.utils.file_util import read_file, write_to_file
        print(loaded())
        path = {str(tmp_path / "cached")!r}
        asyncio.run(write_to_file(logging.getLogger("sdk"), path, "x: 1"))
        print(asyncio.run(read_file(logging.getLogger("sdk"), path)), loaded())
    """)
    assert out == ["[]", "x: 1 ['aiofiles']"]


def test_kms_encryption_still_works_when_enabled():
    """A config service with KMS encryption enabled gets the SDK's real handler (made, not used:
    no KMS here), its module loaded then."""
    out = _python("""
        from higress_init.store.nacos import sdk as nacos_sdk
        sdk = nacos_sdk.load()
        from v2.nacos.config.filter.config_encryption_filter import ConfigEncryptionFilter
        print(loaded())
        config = sdk.ClientConfig(server_addresses="127.0.0.1:8848")
        config.set_kms_config(sdk.KMSConfig(enabled=True, endpoint="kms.invalid", access_key="a", secret_key="b"))
        handler = ConfigEncryptionFilter(config).kms_handler
        print(type(handler).__module__, type(handler).__name__, sorted(handler.kms_plugins),
              "alibabacloud_kms20160120" in loaded())
    """)
    assert out[0] == "[]"
    assert out[1] == ("v2.nacos.config.encryption.kms_handler KMSHandler "
                      "['cipher', 'cipher-kms-aes-128', 'cipher-kms-aes-256'] True")


def test_a_process_that_loaded_the_sdk_first_keeps_it_whole():
    out = _python("""
        import v2.nacos
        from higress_init.store.nacos import sdk
        sdk.load()
        print(loaded())
    """)
    assert "aiohttp" in out[0] and "alibabacloud_kms20160120" in out[0]


# --- connecting without the SDK's fixed 0.1 s wait
def test_a_connection_goes_on_once_the_server_registered_it(nacos, tmp_path):
    """Real Nacos 2.5.1 and 3.0.1, and r-nacos, each say when they registered the connection: the
    client goes on then, not after the SDK's fixed wait."""
    from higress_init import settings
    from higress_init.store.nacos import client as nacos_module
    run_cli("phase", "nacos", volumes=tmp_path / "other", env=nacos.client_env(), check=True)
    s = settings.load(env={**nacos.client_env(), "VOLUMES_ROOT": str(tmp_path / "v")})
    conn = nacos_module.connect(s, lambda *a, **k: None)
    try:
        assert conn.get("never-written", "g") is None
        clients = list(conn.configs.service.grpc_client_proxy.rpc_client_manager.get_all_client_entries().values())
        assert [type(c).__name__ for c in clients] == ["PromptGrpcClient"]
        assert clients[0].registered is True
        assert type(clients[0]).__base__.__name__ == "GrpcClient"
    finally:
        conn.close()


class _Answers:
    """An SDK connection that answers each request with the next of `answers` (an exception: raised)."""

    def __init__(self, *answers):
        self.answers, self.asked = list(answers), 0

    async def request(self, request, timeout_millis):
        from v2.nacos.transport.model.internal_request import HealthCheckRequest
        assert isinstance(request, HealthCheckRequest)
        self.asked += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _registered(conn) -> tuple[bool, float]:
    """registered(conn), and how long it waited by the event loop's clock."""
    import asyncio

    from higress_init.store.nacos import sdk
    sdk.load()

    async def measured():
        loop = asyncio.get_running_loop()
        started = loop.time()
        return await sdk.registered(conn), loop.time() - started
    return asyncio.run(measured())


def test_registered_asks_again_while_the_server_has_not_registered_the_connection():
    from higress_init.store.nacos import sdk
    sdk.load()
    from v2.nacos.transport.model.internal_response import ErrorResponse, HealthCheckResponse
    unregistered = ErrorResponse(resultCode=500, errorCode=sdk.UN_REGISTER, message="Connection is unregistered.")
    conn = _Answers(unregistered, unregistered, HealthCheckResponse())
    assert _registered(conn)[0] is True and conn.asked == 3


@pytest.mark.parametrize("answer", ["timeout", "other error", "failed check"])
def test_registered_waits_as_the_sdk_does_when_the_server_does_not_say(answer):
    """No answer, or one that does not speak of the registration: the SDK's whole fixed wait."""
    from higress_init.store.nacos import sdk
    sdk.load()
    from v2.nacos.transport.model.internal_response import ErrorResponse, HealthCheckResponse
    given = {"timeout": TimeoutError(), "other error": ErrorResponse(resultCode=500, errorCode=500),
             "failed check": HealthCheckResponse(resultCode=500, errorCode=500)}[answer]
    conn = _Answers(given)
    ok, waited = _registered(conn)
    assert ok is False and conn.asked == 1 and waited >= sdk.REGISTER_WAIT


def test_the_sdks_models_are_built_when_used():
    """Loaded, the SDK's pydantic models a run uses are built, the others only defined; one built
    on its first use validates as it would have; pydantic's own default is left as it was."""
    out = _python("""
        import sys
        from higress_init.store.nacos import sdk
        sdk.load()
        from pydantic import BaseModel
        from v2.nacos.config.model.config_response import ConfigQueryResponse
        from v2.nacos.naming.model.instance import Instance
        used = [getattr(sys.modules[m], n) for m, names in sdk.USED_MODELS.items() for n in names]
        print(dict(BaseModel.model_config), len(used), all(m.__pydantic_complete__ for m in used),
              Instance.__pydantic_complete__)
        answer = ConfigQueryResponse.model_validate({"content": "x: 1", "md5": "m", "errorCode": 300})
        instance = Instance.model_validate({"ip": "10.0.0.1", "port": 80})
        print(answer.content, answer.get_error_code(), instance.ip, Instance.__pydantic_complete__)
        class Later(BaseModel):
            a: int = 0
        print(Later.__pydantic_complete__)
    """)
    assert out == ["{} 11 True False", "x: 1 300 10.0.0.1 True", "True"]
