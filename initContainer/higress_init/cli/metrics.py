"""Prometheus metrics of `watch`: every certificate, CA and token it manages, and its last pass.

Named as cert-manager and x509-certificate-exporter users expect, so their alert rules carry over
(an `_expiration_timestamp_seconds` gauge with name, path and issuer labels; `_expires_in_seconds`
as the exporter's). The values come from the rows `status` computes (status.certificate_rows):
one source of truth for what `status`, `watch` and the metrics say.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime

from higress_init.run.reporting import Row

PREFIX = "higress_init"
# the rows that expire: certificates and CAs (artifacts.CERTIFICATES, the kubeconfigs' client
# certificates, the shared CA) and tokens; each kind its own metric families, with the same labels
KINDS = ("certificate", "token")


def _kind(row: Row) -> str:
    return "token" if row["name"].startswith("token ") else "certificate"


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class WatchCollector:
    """What the last pass found, served at scrape time (seconds left are counted at the scrape)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._rows: list[Row] = []
        self._last: tuple[float, bool] | None = None

    def update(self, rows: list[Row], success: bool) -> None:
        with self._lock:
            self._rows = [r for r in rows if r.get("not_after")]
            self._last = (time.time(), success)

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        with self._lock:
            rows, last = list(self._rows), self._last
        now = time.time()
        labels = ["name", "path", "issuer", "ca"]
        families = {}
        for kind in KINDS:
            families[kind] = (
                GaugeMetricFamily(f"{PREFIX}_{kind}_expiration_timestamp_seconds",
                                  f"when the {kind} expires (not after), seconds since the epoch", labels=labels),
                GaugeMetricFamily(f"{PREFIX}_{kind}_expires_in_seconds",
                                  f"seconds until the {kind} expires (negative: expired)", labels=labels),
                GaugeMetricFamily(f"{PREFIX}_{kind}_last_renewal_timestamp_seconds",
                                  f"when the {kind} was last issued or renewed (its not-before, a token's iat), "
                                  "seconds since the epoch",
                                  labels=labels),
                GaugeMetricFamily(f"{PREFIX}_{kind}_ready",
                                  f"1 when status finds the {kind} ok, else 0", labels=labels),
            )
        for row in rows:
            kind = _kind(row)
            values = [row["name"], row["file"], row.get("issuer", ""),
                      "true" if row.get("externally_managed") is not None else "false"]
            expires = _seconds(row["not_after"])
            expiry, left, renewal, ready = families[kind]
            expiry.add_metric(values, expires)
            left.add_metric(values, expires - now)
            if row.get("not_before"):
                renewal.add_metric(values, _seconds(row["not_before"]))
            ready.add_metric(values, 1.0 if row["state"] == "ok" else 0.0)
        for family in families.values():
            yield from family
        run = GaugeMetricFamily(f"{PREFIX}_watch_last_run_timestamp_seconds",
                                "when watch's last pass ended, seconds since the epoch")
        ok = GaugeMetricFamily(f"{PREFIX}_watch_last_run_success",
                               "1 when watch's last pass renewed everything due and found everything ok, else 0")
        if last is not None:
            run.add_metric([], last[0])
            ok.add_metric([], 1.0 if last[1] else 0.0)
        yield run
        yield ok


def serve(port: int) -> WatchCollector:
    """Serve the metrics on `port` (every address of the container: compose publishes no port, so
    only the stack's network reaches it), from a daemon thread."""
    from prometheus_client import CollectorRegistry, start_http_server
    registry = CollectorRegistry(auto_describe=False)
    collector = WatchCollector()
    registry.register(collector)
    start_http_server(port, registry=registry)
    return collector
