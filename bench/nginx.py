"""Generated nginx configs: the fixed-response upstream, and the C reference peer.

Both run as a non-daemon child (``daemon off``, one worker) from a temp prefix
directory on 127.0.0.1, with access logs off and every temp path inside the prefix.
"""

from __future__ import annotations

from pathlib import Path

from bench.procs import which

__all__ = ["argv", "nginx_binary", "proxy_config", "upstream_config", "version"]

_COMMON = """\
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 20480; multi_accept on; }}
worker_rlimit_nofile 40000;
"""

_HTTP = """\
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
"""


def nginx_binary() -> str | None:
    return which("nginx")


def version(binary: str) -> str:
    import subprocess

    done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def upstream_config(prefix: Path, port: int, body: bytes) -> str:
    """nginx answering every request (any method, any path) with 200 and ``body``."""
    return (
        _COMMON.format(prefix=prefix)
        + "http {\n"
        + _HTTP.format(prefix=prefix)
        + f"    server {{\n        listen 127.0.0.1:{port} backlog=4096;\n"
        + "        location / {\n            default_type application/json;\n"
        + f"            return 200 '{_escape(body.decode())}';\n        }}\n    }}\n}}\n"
    )


def proxy_config(prefix: Path, port: int, upstream_port: int, key: str) -> str:
    """nginx as the reference auth proxy: a ``map`` checks one Bearer key, then proxy_pass."""
    denied = '{"error":{"message":"invalid api key","type":"authentication_error"}}'
    return (
        _COMMON.format(prefix=prefix)
        + "http {\n"
        + _HTTP.format(prefix=prefix)
        + f"    upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}\n"
        + "    map_hash_bucket_size 256;\n"
        + f'    map $http_authorization $bench_ok {{ default 0; "Bearer {key}" 1; }}\n'
        + f"    server {{\n        listen 127.0.0.1:{port} backlog=4096;\n"
        + "        location / {\n"
        + "            default_type application/json;\n"
        + f"            if ($bench_ok = 0) {{ return 401 '{denied}'; }}\n"
        + "            proxy_pass http://up;\n"
        + "            proxy_http_version 1.1;\n"
        + '            proxy_set_header Connection "";\n'
        + '            proxy_set_header Authorization "Bearer upstream-secret";\n'
        + "            proxy_buffering off;\n"
        + "        }\n    }\n}\n"
    )


def argv(binary: str, prefix: Path, config_text: str) -> list[str]:
    """Write the config under ``prefix`` and return the command line that runs it."""
    prefix.mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(config_text)
    return [binary, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
