"""Channel adapters against a real SMTP server and a real HTTP receiver on loopback."""

import base64
import hashlib
import hmac
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote_plus

import pytest

from notifications.channels import (
    DeliveryError,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    Message,
    RateLimiter,
    WeComChannel,
    build_channel,
)
from tests.servers import free_port, http_receiver, smtp_server  # noqa: F401

SUBJECT = "【报修】3号楼2单元 水管爆裂"
BODY = "业主王先生反映：厨房水管爆裂，已关总阀。\n\n- 位置：3-2-1201\n- 时限：**2 小时内上门**"
MSG = Message(SUBJECT, BODY, to=("wang@example.cn", "repair@example.cn"))
MENTION = Message(SUBJECT, BODY, mention_mobiles=("13800138000", "13900139000"))


def hmac_b64(key: bytes, msg: bytes) -> str:
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# --- e-mail ------------------------------------------------------------------------------------

def email_channel(server, **kw) -> EmailChannel:
    kw.setdefault("username", "propflow")
    kw.setdefault("password", "s3cret")
    return EmailChannel(server.host, server.port, "物业客服中心 <noreply@propflow.cn>", **kw)


def test_email_with_chinese_subject_and_body_arrives(smtp_server):  # noqa: F811
    email_channel(smtp_server).send(MSG)

    [mail] = smtp_server.wait_for(1)
    assert mail["Subject"] == SUBJECT
    assert mail["From"].addresses[0].addr_spec == "noreply@propflow.cn"
    assert mail["From"].addresses[0].display_name == "物业客服中心"
    assert [a.addr_spec for a in mail["To"].addresses] == list(MSG.to)
    assert mail.get_content_charset() == "utf-8"
    assert mail.get_content().rstrip("\n") == BODY
    assert mail["Message-ID"].endswith("@propflow.cn>")
    assert smtp_server.envelopes == [("noreply@propflow.cn", list(MSG.to))]
    assert smtp_server.logins == [("propflow", "s3cret")]


def test_email_rejected_login_is_not_retryable(smtp_server):  # noqa: F811
    with pytest.raises(DeliveryError) as err:
        email_channel(smtp_server, password="wrong").send(MSG)
    assert err.value.retryable is False
    assert smtp_server.messages == []


def test_email_temporary_smtp_failure_is_retryable(smtp_server):  # noqa: F811
    smtp_server.data_response = "451 4.3.0 Try again later"
    with pytest.raises(DeliveryError) as err:
        email_channel(smtp_server).send(MSG)
    assert err.value.retryable is True


def test_email_without_recipients_is_not_retryable(smtp_server):  # noqa: F811
    with pytest.raises(DeliveryError, match="no recipients") as err:
        email_channel(smtp_server).send(Message(SUBJECT, BODY))
    assert err.value.retryable is False


def test_email_connection_refused_is_retryable():
    channel = EmailChannel("127.0.0.1", free_port(), "noreply@propflow.cn", timeout=2)
    with pytest.raises(DeliveryError) as err:
        channel.send(MSG)
    assert err.value.retryable is True


# --- WeCom -------------------------------------------------------------------------------------

def test_wecom_sends_markdown_only_without_mentions(http_receiver):  # noqa: F811
    WeComChannel(http_receiver.url + "/cgi-bin/webhook/send?key=k-123").send(MSG)

    [req] = http_receiver.wait_for(1)
    assert req.path == "/cgi-bin/webhook/send"
    assert req.query == {"key": "k-123"}
    assert req.headers["Content-Type"] == "application/json"
    assert req.json == {"msgtype": "markdown",
                        "markdown": {"content": f"**{SUBJECT}**\n\n{BODY}"}}


def test_wecom_mentions_go_in_a_second_text_message(http_receiver):  # noqa: F811
    WeComChannel(http_receiver.url + "/send?key=k").send(MENTION)

    first, second = http_receiver.wait_for(2)
    assert first.json["msgtype"] == "markdown"
    assert second.json == {"msgtype": "text", "text": {
        "content": SUBJECT, "mentioned_mobile_list": ["13800138000", "13900139000"]}}


def test_wecom_clips_markdown_to_its_4096_byte_limit(http_receiver):  # noqa: F811
    WeComChannel(http_receiver.url).send(Message(SUBJECT, "报修" * 3000))

    content = http_receiver.wait_for(1)[0].json["markdown"]["content"]
    assert len(content.encode()) <= 4096
    assert content.endswith("…")


# --- DingTalk ----------------------------------------------------------------------------------

def test_dingtalk_signs_url_and_mentions(http_receiver):  # noqa: F811
    secret = "SEC0123456789abcdef"
    before = time.time() * 1000
    DingTalkChannel(http_receiver.url + "/robot/send?access_token=tok", secret=secret).send(MENTION)

    [req] = http_receiver.wait_for(1)
    assert req.path == "/robot/send"
    assert req.query["access_token"] == "tok"
    timestamp = req.query["timestamp"]
    assert before - 1000 <= int(timestamp) <= time.time() * 1000 + 1000
    expected = hmac_b64(secret.encode(), f"{timestamp}\n{secret}".encode())
    assert req.query["sign"] == expected
    assert f"sign={quote_plus(expected)}" in req.raw_query  # sent URL-encoded
    assert req.json["msgtype"] == "markdown"
    assert req.json["markdown"]["title"] == SUBJECT
    text = req.json["markdown"]["text"]
    assert SUBJECT in text and BODY in text
    assert "@13800138000" in text and "@13900139000" in text
    assert req.json["at"] == {"atMobiles": ["13800138000", "13900139000"]}


def test_dingtalk_without_secret_does_not_sign(http_receiver):  # noqa: F811
    DingTalkChannel(http_receiver.url + "/robot/send?access_token=tok").send(MSG)

    [req] = http_receiver.wait_for(1)
    assert req.query == {"access_token": "tok"}
    assert req.json["at"] == {"atMobiles": []}


# --- Feishu ------------------------------------------------------------------------------------

def test_feishu_signs_body_and_sends_post(http_receiver):  # noqa: F811
    http_receiver.respond_with({"code": 0, "msg": "success", "data": {}})
    secret = "feishu-secret"
    before = int(time.time())
    FeishuChannel(http_receiver.url + "/open-apis/bot/v2/hook/abc", secret=secret).send(MSG)

    [req] = http_receiver.wait_for(1)
    assert req.path == "/open-apis/bot/v2/hook/abc"
    body = req.json
    assert isinstance(body["timestamp"], str)
    assert before - 1 <= int(body["timestamp"]) <= time.time() + 1
    assert body["sign"] == hmac_b64(f"{body['timestamp']}\n{secret}".encode(), b"")
    assert body["msg_type"] == "post"
    assert body["content"] == {"post": {"zh_cn": {
        "title": SUBJECT, "content": [[{"tag": "text", "text": BODY}]]}}}


def test_feishu_without_secret_has_no_signature(http_receiver):  # noqa: F811
    http_receiver.respond_with({"code": 0, "msg": "success"})
    FeishuChannel(http_receiver.url).send(MSG)
    assert "sign" not in http_receiver.wait_for(1)[0].json


# --- failures ----------------------------------------------------------------------------------

BOTS = [WeComChannel, DingTalkChannel, FeishuChannel]


@pytest.mark.parametrize(("cls", "answer", "retryable"), [
    (WeComChannel, {"errcode": 45009, "errmsg": "api freq out of limit"}, True),
    (WeComChannel, {"errcode": 93000, "errmsg": "invalid webhook url"}, False),
    (DingTalkChannel, {"errcode": 130101, "errmsg": "send too fast"}, True),
    (DingTalkChannel, {"errcode": 310000, "errmsg": "sign not match"}, False),
    (FeishuChannel, {"code": 11232, "msg": "frequency limited"}, True),
    (FeishuChannel, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"},
     False),
    (FeishuChannel, {"msg": "no code at all"}, False),
])
def test_bot_error_code_raises(http_receiver, cls, answer, retryable):  # noqa: F811
    http_receiver.respond_with(answer)
    with pytest.raises(DeliveryError) as err:
        cls(http_receiver.url + "/hook?access_token=SECRET-TOKEN").send(MSG)
    assert err.value.retryable is retryable
    assert "SECRET-TOKEN" not in str(err.value)


@pytest.mark.parametrize("cls", BOTS)
@pytest.mark.parametrize(("status", "retryable"), [
    (500, True), (502, True), (429, True), (400, False), (404, False)])
def test_bot_http_status(http_receiver, cls, status, retryable):  # noqa: F811
    http_receiver.respond_with({"errcode": 0, "code": 0}, status=status)
    with pytest.raises(DeliveryError) as err:
        cls(http_receiver.url).send(MSG)
    assert err.value.retryable is retryable


@pytest.mark.parametrize("cls", BOTS)
def test_bot_connection_refused_is_retryable(cls):
    with pytest.raises(DeliveryError) as err:
        cls(f"http://127.0.0.1:{free_port()}/hook").send(MSG)
    assert err.value.retryable is True


def test_bot_non_json_answer_is_not_retryable(http_receiver):  # noqa: F811
    http_receiver.respond_with("<html>login required</html>")
    with pytest.raises(DeliveryError) as err:
        WeComChannel(http_receiver.url).send(MSG)
    assert err.value.retryable is False


def test_wecom_failed_mention_message_raises(http_receiver):  # noqa: F811
    http_receiver.respond_once({"errcode": 0}, {"errcode": 45009, "errmsg": "freq"})
    with pytest.raises(DeliveryError) as err:
        WeComChannel(http_receiver.url).send(MENTION)
    assert err.value.retryable is True
    assert len(http_receiver.requests) == 2


# --- rate limiting -----------------------------------------------------------------------------

def test_rate_limiter_lets_20_through_and_makes_the_21st_wait():
    clock = FakeClock()
    limiter = RateLimiter(20, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    clock.now = 10.0
    for _ in range(19):
        assert limiter.acquire() == 0.0
    assert clock.sleeps == []

    clock.now = 30.0
    assert limiter.acquire() == pytest.approx(30.0)  # until the t=0 slot leaves the window
    assert clock.sleeps == [pytest.approx(30.0)]
    assert limiter.acquire() == pytest.approx(10.0)  # next free slot is the t=10 one


def test_rate_limiter_is_shared_safely_between_threads():
    clock = FakeClock()
    limiter = RateLimiter(20, clock=clock, sleep=clock.sleep)
    threads = [threading.Thread(target=limiter.acquire) for _ in range(25)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert clock.sleeps == [60.0]  # one waiter sleeps, then the whole window has expired


def test_channel_send_waits_for_its_limiter(http_receiver):  # noqa: F811
    clock = FakeClock()
    channel = DingTalkChannel(http_receiver.url,
                              limiter=RateLimiter(1, clock=clock, sleep=clock.sleep))
    channel.send(MSG)
    channel.send(MSG)
    assert clock.sleeps == [60.0]
    assert len(http_receiver.wait_for(2)) == 2


# --- build_channel -----------------------------------------------------------------------------

def test_build_channel_from_policy_entries(monkeypatch, http_receiver):  # noqa: F811
    monkeypatch.setenv("PROPFLOW_DINGTALK_SECRET", "ding-secret")
    monkeypatch.setenv("PROPFLOW_SMTP_USER", "propflow")
    monkeypatch.setenv("PROPFLOW_SMTP_PASSWORD", "s3cret")

    email = build_channel("ops-mail", {
        "kind": "email", "host": "smtp.example.com", "sender": "noreply@x.cn", "ssl": True,
        "username_env": "PROPFLOW_SMTP_USER", "password_env": "PROPFLOW_SMTP_PASSWORD"})
    assert isinstance(email, EmailChannel)
    assert (email.name, email.port, email.ssl, email.starttls) == ("ops-mail", 465, True, False)
    assert (email.username, email.password, email.limiter) == ("propflow", "s3cret", None)

    wecom = build_channel("wx", {"kind": "wecom", "url": http_receiver.url})
    feishu = build_channel("fs", {"kind": "feishu", "url": http_receiver.url})
    assert isinstance(wecom, WeComChannel) and wecom.limiter.per_minute == 20
    assert isinstance(feishu, FeishuChannel) and feishu.limiter.per_minute == 100
    assert feishu.secret is None

    ding = build_channel("dd", {"kind": "dingtalk", "url": http_receiver.url + "/s?access_token=t",
                                "secret_env": "PROPFLOW_DINGTALK_SECRET", "rate_per_minute": 5})
    assert isinstance(ding, DingTalkChannel) and ding.limiter.per_minute == 5
    ding.send(MSG)
    query = http_receiver.wait_for(1)[0].query
    assert query["sign"] == hmac_b64(b"ding-secret", f"{query['timestamp']}\nding-secret".encode())


@pytest.mark.parametrize(("spec", "key", "expected"), [
    ({"url": "https://x"}, "kind", "one of email, wecom, dingtalk, feishu"),
    ({"kind": "sms"}, "kind", "feishu, aliyun_sms, tencent_sms, got 'sms'"),
    ({"kind": "wecom"}, "url", "the bot webhook URL"),
    ({"kind": "wecom", "url": "qyapi.weixin.qq.com/x"}, "url", "http(s) webhook URL"),
    ({"kind": "email", "sender": "a@x.cn"}, "host", "SMTP host"),
    ({"kind": "email", "host": "h"}, "sender", "From address"),
    ({"kind": "email", "host": "h", "sender": "a@x.cn", "port": "25"}, "port", "port number"),
    ({"kind": "email", "host": "h", "sender": "a@x.cn", "ssl": True, "starttls": True},
     "starttls", "pick one"),
    ({"kind": "dingtalk", "url": "https://x", "secret_env": "PROPFLOW_TEST_UNSET_SECRET"},
     "secret_env", "'PROPFLOW_TEST_UNSET_SECRET' to be set"),
    ({"kind": "dingtalk", "url": "https://x", "secret": "inline"}, "secret", "secret_env"),
    ({"kind": "wecom", "url": "https://x", "rate_per_minute": 0}, "rate_per_minute", "positive"),
    ({"kind": "wecom", "url": "https://x", "rate_per_minute": True}, "rate_per_minute",
     "positive"),
])
def test_build_channel_errors_name_channel_and_key(monkeypatch, spec, key, expected):
    monkeypatch.delenv("PROPFLOW_TEST_UNSET_SECRET", raising=False)
    with pytest.raises(ValueError) as err:
        build_channel("repair-bot", spec)
    text = str(err.value)
    assert "'repair-bot'" in text and f"key {key!r}" in text and expected in text


def test_bots_module_can_be_imported_first():
    code = "import notifications.bots; from notifications.channels import WeComChannel"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
