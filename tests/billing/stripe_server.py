"""A local Stripe-compatible server for tests: ``POST /v1/billing/meter_events`` with Stripe's rules.

Form-encoded body (``payload[stripe_customer_id]=...``), bearer auth, ``identifier`` unique over 24 hours
(a duplicate is a 400 in Stripe's error shape), ``timestamp`` no older than 35 days and at most 5 minutes
ahead. Any ``event_name`` is taken (one per meter: tokens, instance-minutes). It answers with the
``billing.meter_event`` object. Tests read what it holds with ``totals()``, per customer and meter.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

DAY_S = 24 * 3600
MAX_AGE_S = 35 * DAY_S
MAX_AHEAD_S = 5 * 60


class StripeError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.kind, "message": self.message}
        if self.param:
            error["param"] = self.param
        if self.code:
            error["code"] = self.code
        return {"error": error}


@dataclass
class MeterEventStore:
    """What the fake Stripe account holds."""

    api_key: str
    events: list[dict[str, Any]] = field(default_factory=list)
    seen: dict[str, float] = field(default_factory=dict)  # identifier -> when it was accepted
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, form: dict[str, str], now: float) -> dict[str, Any]:
        for name in ("event_name", "payload[stripe_customer_id]", "payload[value]"):
            if not form.get(name):
                raise StripeError(400, f"Missing required param: {name}.", param=name,
                                  code="parameter_missing")
        if not form["payload[value]"].lstrip("-").isdigit():
            raise StripeError(400, "payload[value] must be an integer.", param="payload[value]")
        timestamp = int(form.get("timestamp") or now)
        if timestamp < now - MAX_AGE_S:
            raise StripeError(400, "Timestamp must be within the past 35 calendar days.", param="timestamp")
        if timestamp > now + MAX_AHEAD_S:
            raise StripeError(400, "Timestamp must be at most 5 minutes in the future.", param="timestamp")
        identifier = form.get("identifier") or f"gen_{len(self.events)}_{now}"
        with self.lock:
            accepted = self.seen.get(identifier)
            if accepted is not None and now - accepted < DAY_S:
                raise StripeError(400, f"An event already exists with identifier {identifier}.",
                                  param="identifier", code="resource_already_exists")
            payload = {k[len("payload["):-1]: v for k, v in form.items() if k.startswith("payload[")}
            event = {"object": "billing.meter_event", "created": int(now), "event_name": form["event_name"],
                     "identifier": identifier, "livemode": False, "payload": payload, "timestamp": timestamp}
            self.seen[identifier] = now
            self.events.append(event)
        return event

    def totals(self, event_name: str | None = None) -> dict[str, int]:
        """Sum of ``value`` per Stripe customer (of one meter's events, or of all)."""
        with self.lock:
            out: dict[str, int] = {}
            for event in self.events:
                if event_name is not None and event["event_name"] != event_name:
                    continue
                customer = event["payload"]["stripe_customer_id"]
                out[customer] = out.get(customer, 0) + int(event["payload"]["value"])
            return out

    def identifiers(self) -> list[str]:
        with self.lock:
            return [event["identifier"] for event in self.events]


def _handler(store: MeterEventStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:  # keep test output quiet
            pass

        def do_POST(self) -> None:
            try:
                if self.headers.get("Authorization") != f"Bearer {store.api_key}":
                    raise StripeError(401, "Invalid API Key provided.", kind="invalid_request_error")
                if self.path.split("?")[0] != "/v1/billing/meter_events":
                    raise StripeError(404, f"Unrecognized request URL (POST: {self.path}).")
                if not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                    raise StripeError(400, "Request body must be form-encoded.")
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
                self._reply(200, store.create(form, time.time()))
            except StripeError as exc:
                self._reply(exc.status, exc.body())

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("Request-Id", f"req_{time.monotonic_ns()}")
            self.end_headers()
            self.wfile.write(raw)

    return Handler


class StripeServer:
    """The server on 127.0.0.1 and a free port, in a background thread."""

    def __init__(self, api_key: str = "sk_test_meterway") -> None:
        self.store = MeterEventStore(api_key)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.store))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def api_key(self) -> str:
        return self.store.api_key

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StripeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
