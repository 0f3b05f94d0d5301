"""SMS for owners (notifications/sms.py) against a local HTTP receiver that checks each
provider's signature as the provider does, written here independently of the channel: a
request signed with the wrong secret is refused, as the provider would refuse it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote_plus

import pytest
from sqlalchemy import select

from core.errors import PropflowError
from core.policy import load_policy
from core.vocabulary import Role
from models.db import unit_of_work
from models.outbox import Notification
from notifications.channels import DeliveryError, Message, RateLimiter, SmsTemplate, build_channel
from notifications.sms import AliyunSmsChannel, TencentSmsChannel
from propflow import actions
from tests.flowkit import REPAIR

PHONE = "13800138000"
KEY_ID, SECRET = "LTAI-test-key", "s3cret-of-the-test"
TEXT = Message("【待办】报修", "请答复", phone=PHONE, sms=SmsTemplate(
    "SMS_4242", "阳光物业", (("number", "BX-20261124-0001"),
                            ("link", "http://127.0.0.1:8080/o/abc-DEF_123"),
                            ("due", "11-24 10:00 *回访~"))))  # space, * and ~ encode apart


# --- the providers' checks, as their documents describe them --------------------------------

def aliyun_expected(secret: str, method: str, params: dict[str, str]) -> str:
    """Alibaba Cloud RPC signature: Java-style URL encoding fixed up to RFC 3986."""
    def enc(text: str) -> str:
        return quote_plus(text, encoding="utf-8").replace("+", "%20").replace(
            "*", "%2A").replace("%7E", "~")

    query = "&".join(enc(k) + "=" + enc(params[k]) for k in sorted(params))
    string_to_sign = method + "&" + enc("/") + "&" + enc(query)
    mac = hmac.new((secret + "&").encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def aliyun_verifies(secret: str, method: str, body: bytes) -> bool:
    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    sent = params.pop("Signature", "")
    fresh = abs(datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
                .replace(tzinfo=UTC).timestamp() - time.time()) < 900
    return fresh and hmac.compare_digest(sent, aliyun_expected(secret, method, params))


def tencent_verifies(secret_key: str, headers: dict[str, str], body: bytes) -> bool:
    """TC3-HMAC-SHA256 rebuilt from what arrived: the signed headers, the body, the scope."""
    h = {k.lower(): v for k, v in headers.items()}
    algorithm, _, rest = h["authorization"].partition(" ")
    fields = dict(part.strip().split("=", 1) for part in rest.split(","))
    _secret_id, day, service, terminator = fields["Credential"].split("/")
    stamp = int(h["x-tc-timestamp"])
    if (algorithm != "TC3-HMAC-SHA256" or terminator != "tc3_request"
            or datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d") != day
            or abs(stamp - time.time()) > 300):
        return False
    signed = fields["SignedHeaders"].split(";")
    canonical_headers = "".join(f"{name}:{h[name].strip().lower()}\n" for name in signed)
    canonical = (f"POST\n/\n\n{canonical_headers}\n{fields['SignedHeaders']}\n"
                 f"{hashlib.sha256(body).hexdigest()}")
    string_to_sign = (f"{algorithm}\n{stamp}\n{day}/{service}/tc3_request\n"
                      f"{hashlib.sha256(canonical.encode()).hexdigest()}")

    def sign(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    key = sign(sign(sign(("TC3" + secret_key).encode("utf-8"), day), service), "tc3_request")
    expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return hmac.compare_digest(fields["Signature"], expected)


class Provider:
    """A local stand-in for an SMS API: verifies each request, answers as the provider does."""

    def __init__(self, kind: str, secret: str) -> None:
        self.kind, self.secret = kind, secret
        self.requests: list[dict[str, Any]] = []
        self.answer: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]] | None = None
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = provider.handle(self.command, dict(self.headers.items()), body)
                payload = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def handle(self, method: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if self.kind == "aliyun":
            ok = aliyun_verifies(self.secret, method, body)
            request = {"params": dict(parse_qsl(body.decode())), "verified": ok}
            refusal = (400, {"Code": "SignatureDoesNotMatch", "RequestId": "r1",
                             "Message": "Specified signature does not match our calculation."})
            success = (200, {"Code": "OK", "Message": "OK", "BizId": "900^1", "RequestId": "r1"})
        else:
            ok = tencent_verifies(self.secret, headers, body)
            request = {"headers": headers, "json": json.loads(body), "verified": ok}
            refusal = (200, {"Response": {"Error": {
                "Code": "AuthFailure.SignatureFailure",
                "Message": "The provided credentials could not be validated."},
                "RequestId": "r1"}})
            success = (200, {"Response": {"SendStatusSet": [{
                "SerialNo": "2028:1", "PhoneNumber": f"+86{PHONE}", "Fee": 1, "Code": "Ok",
                "Message": "send success"}], "RequestId": "r1"}})
        with self._lock:
            self.requests.append(request)
        if not ok:
            return refusal
        return self.answer(request) if self.answer else success

    def wait_for(self, n: int, timeout: float = 5) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.01)
        raise AssertionError(f"expected {n} requests, got {len(self.requests)}")


def _serve(provider: Provider) -> Iterator[Provider]:
    thread = threading.Thread(target=provider.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        provider.server.shutdown()
        provider.server.server_close()
        thread.join(5)


@pytest.fixture
def aliyun() -> Iterator[Provider]:
    yield from _serve(Provider("aliyun", SECRET))


@pytest.fixture
def tencent() -> Iterator[Provider]:
    yield from _serve(Provider("tencent", SECRET))


# --- Alibaba Cloud ----------------------------------------------------------------------------

def test_an_aliyun_text_is_signed_as_documented_and_accepted(aliyun):
    AliyunSmsChannel(aliyun.url, key_id=KEY_ID, secret=SECRET).send(TEXT)

    [request] = aliyun.wait_for(1)
    assert request["verified"]
    params = request["params"]
    assert params["Action"] == "SendSms" and params["Version"] == "2017-05-25"
    assert params["AccessKeyId"] == KEY_ID and params["SignatureMethod"] == "HMAC-SHA1"
    assert params["PhoneNumbers"] == PHONE and params["SignName"] == "阳光物业"
    assert params["TemplateCode"] == "SMS_4242"
    assert json.loads(params["TemplateParam"]) == {
        "number": "BX-20261124-0001", "link": "http://127.0.0.1:8080/o/abc-DEF_123",
        "due": "11-24 10:00 *回访~"}


def test_an_aliyun_text_signed_with_the_wrong_secret_is_refused(aliyun):
    with pytest.raises(DeliveryError) as err:
        AliyunSmsChannel(aliyun.url, key_id=KEY_ID, secret="not-the-secret").send(TEXT)
    assert "SignatureDoesNotMatch" in str(err.value) and err.value.retryable is False
    assert aliyun.wait_for(1)[0]["verified"] is False


def test_each_aliyun_request_has_a_fresh_nonce(aliyun):
    channel = AliyunSmsChannel(aliyun.url, key_id=KEY_ID, secret=SECRET)
    channel.send(TEXT)
    channel.send(TEXT)
    first, second = aliyun.wait_for(2)
    assert first["params"]["SignatureNonce"] != second["params"]["SignatureNonce"]


def test_flow_control_is_retried_and_the_error_never_shows_the_number(aliyun):
    aliyun.answer = lambda request: (200, {
        "Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": f"触发号码天级流控 {PHONE}"})
    with pytest.raises(DeliveryError) as err:
        AliyunSmsChannel(aliyun.url, key_id=KEY_ID, secret=SECRET).send(TEXT)
    assert err.value.retryable is True
    assert PHONE not in str(err.value) and "138****8000" in str(err.value)


# --- Tencent Cloud ----------------------------------------------------------------------------

def test_a_tencent_text_is_signed_as_documented_and_accepted(tencent):
    TencentSmsChannel(tencent.url, key_id="AKID-test", secret=SECRET, app_id="1400006666").send(
        TEXT)

    [request] = tencent.wait_for(1)
    assert request["verified"]
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["x-tc-action"] == "SendSms" and headers["x-tc-version"] == "2021-01-11"
    assert headers["x-tc-region"] == "ap-guangzhou"
    assert headers["authorization"].startswith("TC3-HMAC-SHA256 Credential=AKID-test/")
    assert request["json"] == {
        "PhoneNumberSet": [f"+86{PHONE}"], "SmsSdkAppId": "1400006666", "SignName": "阳光物业",
        "TemplateId": "SMS_4242",
        "TemplateParamSet": ["BX-20261124-0001", "http://127.0.0.1:8080/o/abc-DEF_123",
                             "11-24 10:00 *回访~"]}


def test_a_tencent_text_signed_with_the_wrong_secret_is_refused(tencent):
    channel = TencentSmsChannel(tencent.url, key_id="AKID-test", secret="wrong",
                                app_id="1400006666")
    with pytest.raises(DeliveryError) as err:
        channel.send(TEXT)
    assert "AuthFailure.SignatureFailure" in str(err.value) and err.value.retryable is False
    assert tencent.wait_for(1)[0]["verified"] is False


def test_a_tencent_number_refused_is_not_retried_but_a_busy_api_is(tencent):
    channel = TencentSmsChannel(tencent.url, key_id="AKID-test", secret=SECRET,
                                app_id="1400006666")
    tencent.answer = lambda request: (200, {"Response": {"SendStatusSet": [{
        "Code": "InvalidParameterValue.IncorrectPhoneNumber", "Message": f"{PHONE} invalid"}],
        "RequestId": "r2"}})
    with pytest.raises(DeliveryError) as err:
        channel.send(TEXT)
    assert err.value.retryable is False and PHONE not in str(err.value)
    tencent.answer = lambda request: (200, {"Response": {"Error": {
        "Code": "RequestLimitExceeded", "Message": "too many"}, "RequestId": "r3"}})
    with pytest.raises(DeliveryError) as err:
        channel.send(TEXT)
    assert err.value.retryable is True


# --- rate limit, policy -----------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return float(self.now)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_texts_wait_for_the_channels_rate_limit(aliyun):
    clock = FakeClock()
    channel = AliyunSmsChannel(aliyun.url, key_id=KEY_ID, secret=SECRET,
                               limiter=RateLimiter(2, clock=clock, sleep=clock.sleep))
    for _ in range(3):
        channel.send(TEXT)
    assert clock.sleeps == [60.0]  # the third waited for the minute to pass
    assert [r["verified"] for r in aliyun.wait_for(3)] == [True] * 3


def test_the_policy_builds_a_rate_limited_channel(monkeypatch, tencent):
    monkeypatch.setenv("T_ID", "AKID-test")
    monkeypatch.setenv("T_KEY", SECRET)
    channel = build_channel("owner_sms", {
        "kind": "tencent_sms", "url": tencent.url, "sdk_app_id": "1400006666",
        "access_key_id_env": "T_ID", "access_key_secret_env": "T_KEY", "rate_per_minute": 30})
    assert isinstance(channel, TencentSmsChannel) and channel.limiter is not None
    assert channel.limiter.per_minute == 30
    channel.send(TEXT)
    assert tencent.wait_for(1)[0]["verified"]


def sms_policy(policy_with: Callable[..., Any], url: str,
               routes: dict[str, list[str]] | None = None, **sms: Any) -> Any:
    return policy_with(
        routes=routes or {},
        channels={"owner_sms": {"kind": "aliyun_sms", "url": url,
                                "access_key_id_env": "ALI_ID", "access_key_secret_env": "ALI_KEY"},
                  "ops": {"kind": "wecom", "url": "http://127.0.0.1:9/send?key=k"}},
        sms={"channel": "owner_sms", "sign_name": "阳光物业",
             "templates": {"step_opened": {"id": "SMS_4242", "params": ["number", "link"]}}}
        | sms)


@pytest.mark.parametrize(("change", "key", "expected"), [
    ({"channel": "ops"}, "sms.channel", "aliyun_sms or tencent_sms"),
    ({"templates": {"no_such_event": {"id": "SMS_1"}}}, "sms.templates.no_such_event",
     "step_opened"),
    ({"templates": {"step_opened": {"id": ""}}}, "sms.templates.step_opened.id", "at least 1"),
    ({"templates": {"step_opened": {"id": "SMS_1", "params": ["Bad-Name"]}}},
     "sms.templates.step_opened.params[0]", "pattern"),
    ({"sign_name": ""}, "sms.sign_name", "at least 1"),
])
def test_the_policy_check_names_a_bad_sms_section(policy_with, monkeypatch, change, key,
                                                   expected):
    monkeypatch.setenv("ALI_ID", KEY_ID)
    monkeypatch.setenv("ALI_KEY", SECRET)
    path = sms_policy(policy_with, "http://127.0.0.1:9/", **change)
    with pytest.raises(PropflowError) as err:
        load_policy(path)
    assert err.value.field == key and str(path) in err.value.message
    assert expected in err.value.message


def test_the_policy_check_names_a_bad_sms_channel(policy_with, monkeypatch):
    monkeypatch.setenv("T_ID", "AKID-test")
    monkeypatch.setenv("T_KEY", SECRET)
    path = policy_with(channels={"t": {"kind": "tencent_sms", "access_key_id_env": "T_ID",
                                       "access_key_secret_env": "T_KEY"}})
    with pytest.raises(PropflowError) as err:
        load_policy(path)
    assert err.value.field == "channels.t" and "sdk_app_id" in err.value.message
    path = policy_with(channels={"t": {"kind": "tencent_sms", "sdk_app_id": "1400006666",
                                       "access_key_id_env": "T_ID",
                                       "access_key_secret_env": "T_KEY_UNSET"}})
    with pytest.raises(PropflowError) as err:
        load_policy(path)
    assert "T_KEY_UNSET" in err.value.message and "set and non-empty" in err.value.message


# --- an owner's link by SMS -------------------------------------------------------------------

def test_an_owners_link_goes_by_sms_with_the_policys_template(demo, aliyun, policy_with,
                                                              monkeypatch):
    from models import directory, steps
    from notifications.delivery import deliver_due

    monkeypatch.setenv("ALI_ID", KEY_ID)
    monkeypatch.setenv("ALI_KEY", SECRET)
    sms_policy(policy_with, aliyun.url)
    number = actions.open_repair(start_run=False, **REPAIR | {"phone": PHONE})["number"]
    with unit_of_work() as session:
        case = directory.case(session, number)
        from core.clock import now

        steps.open_step(session, case=case, key="callback#1", kind="callback",
                        role=Role.OWNER, now=now())
        steps.open_step(session, case=case, key="dispatch#1", kind="dispatch",
                        role=Role.TECH_SUPERVISOR, now=now())

    assert deliver_due()["sent"] >= 1
    [request] = aliyun.wait_for(1)
    assert request["verified"]
    assert request["params"]["TemplateCode"] == "SMS_4242"
    assert request["params"]["PhoneNumbers"] == PHONE
    values = json.loads(request["params"]["TemplateParam"])
    assert values["number"] == number
    assert values["link"].startswith("http://127.0.0.1:8080/o/")
    with unit_of_work() as session:
        texts = session.scalars(select(Notification).where(
            Notification.channel == "owner_sms")).all()
        # Only the owner is texted: staff have their inbox (no route sends them SMS).
        assert [(t.recipient, t.status) for t in texts] == [(f"owner:{PHONE}", "sent")]
        # The same link as the owner's own message: one link per person and step.
        inbox = session.scalars(select(Notification.body).where(
            Notification.recipient == f"owner:{PHONE}", Notification.event == "step_opened",
            Notification.channel == "inbox")).one()
        assert values["link"] in inbox


def test_a_route_to_an_sms_channel_texts_staff_each_their_own_link(demo, aliyun, policy_with,
                                                                   monkeypatch):
    from core.clock import now
    from models import directory, steps
    from notifications.delivery import deliver_due

    monkeypatch.setenv("ALI_ID", KEY_ID)
    monkeypatch.setenv("ALI_KEY", SECRET)
    sms_policy(policy_with, aliyun.url, routes={"step_opened": ["owner_sms"]})
    number = actions.open_repair(start_run=False, **REPAIR | {"phone": PHONE})["number"]
    with unit_of_work() as session:
        steps.open_step(session, case=directory.case(session, number), key="dispatch#1",
                        kind="dispatch", role=Role.TECH_SUPERVISOR, now=now())
        told = session.scalars(select(Notification.recipient).where(
            Notification.channel == "owner_sms")).all()
    assert told and all(r.startswith("staff:") for r in told)
    deliver_due()
    requests = aliyun.wait_for(len(told))
    assert all(r["verified"] for r in requests)
    links = [json.loads(r["params"]["TemplateParam"])["link"] for r in requests]
    assert all(link.startswith("http://127.0.0.1:8080/l/") for link in links)
    assert len(set(links)) == len(links)  # each person their own
