"""WeCom (企业微信), DingTalk (钉钉) and Feishu (飞书) custom group-bot webhooks.

Normally imported via notifications.channels; build_channel wires them from the policy file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote_plus

import httpx

from notifications.channels import DeliveryError, Message, RateLimiter

TIMEOUT = 10.0
# WeCom rejects over-long content outright (errcode 40058); a clipped notice beats none.
_WECOM_MARKDOWN_MAX_BYTES = 4096
_WECOM_TEXT_MAX_BYTES = 2048


def _hmac_b64(key: bytes, msg: bytes) -> str:
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()


def _clip_utf8(text: str, limit: int) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "…"  # "…" is 3 bytes in UTF-8


class _Bot:
    code_keys: tuple[str, ...] = ("errcode",)
    retry_codes: frozenset[int] = frozenset()

    def __init__(self, url: str, *, name: str, limiter: RateLimiter | None = None,
                 timeout: float = TIMEOUT) -> None:
        self.url, self.name, self.limiter, self.timeout = url, name, limiter, timeout

    def _signed(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return self.url, payload

    def _post(self, payload: dict[str, Any]) -> None:
        if self.limiter:
            self.limiter.acquire()
        # Signed after the wait so the timestamp is fresh when the bot checks it.
        url, payload = self._signed(payload)
        # Error texts leave the URL out: its key/access_token is the bot's credential.
        try:
            resp = httpx.post(url, json=payload, timeout=self.timeout)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise DeliveryError(f"{self.name}: bad webhook URL: {exc}", retryable=False) from exc
        except httpx.TransportError as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}",
                                retryable=True) from exc
        if resp.status_code == 429 or resp.status_code >= 500:
            raise DeliveryError(f"{self.name}: HTTP {resp.status_code}", retryable=True)
        if not resp.is_success:
            raise DeliveryError(f"{self.name}: HTTP {resp.status_code}: {resp.text[:200]}",
                                retryable=False)
        try:
            data = resp.json()
        except ValueError as exc:
            raise DeliveryError(f"{self.name}: response is not JSON: {resp.text[:200]!r}",
                                retryable=False) from exc
        fields = data if isinstance(data, dict) else {}
        code = next((fields[k] for k in self.code_keys if k in fields), None)
        if code != 0:
            raise DeliveryError(f"{self.name}: bot answered {str(data)[:300]}",
                                retryable=code in self.retry_codes)


class WeComChannel(_Bot):
    """企业微信群机器人. Markdown cannot @mention by mobile, so mentions go in a second text
    message; if that one fails after the first succeeded, a retry repeats the markdown."""

    retry_codes = frozenset({-1, 45009})  # -1 system busy, 45009 rate limited

    def __init__(self, url: str, *, name: str = "wecom", limiter: RateLimiter | None = None,
                 timeout: float = TIMEOUT) -> None:
        super().__init__(url, name=name, limiter=limiter, timeout=timeout)

    def send(self, message: Message) -> None:
        content = f"**{message.subject}**\n\n{message.body}"
        self._post({"msgtype": "markdown",
                    "markdown": {"content": _clip_utf8(content, _WECOM_MARKDOWN_MAX_BYTES)}})
        if message.mention_mobiles:
            self._post({"msgtype": "text", "text": {
                "content": _clip_utf8(message.subject, _WECOM_TEXT_MAX_BYTES),
                "mentioned_mobile_list": list(message.mention_mobiles)}})


class DingTalkChannel(_Bot):
    """钉钉自定义机器人, optionally with 加签 (signature in the URL query)."""

    retry_codes = frozenset({-1, 130101})  # -1 system busy, 130101 over 20 messages a minute

    def __init__(self, url: str, *, secret: str | None = None, name: str = "dingtalk",
                 limiter: RateLimiter | None = None, timeout: float = TIMEOUT) -> None:
        super().__init__(url, name=name, limiter=limiter, timeout=timeout)
        self.secret = secret

    def send(self, message: Message) -> None:
        text = f"#### {message.subject}\n\n{message.body}"
        if message.mention_mobiles:
            # DingTalk only pings atMobiles that also appear as "@mobile" in the text.
            text += "\n\n" + " ".join(f"@{m}" for m in message.mention_mobiles)
        self._post({"msgtype": "markdown",
                    "markdown": {"title": message.subject, "text": text},
                    "at": {"atMobiles": list(message.mention_mobiles)}})

    def _signed(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if not self.secret:
            return self.url, payload
        timestamp = str(round(time.time() * 1000))
        sign = _hmac_b64(self.secret.encode(), f"{timestamp}\n{self.secret}".encode())
        sep = "&" if "?" in self.url else "?"
        return f"{self.url}{sep}timestamp={timestamp}&sign={quote_plus(sign)}", payload


class FeishuChannel(_Bot):
    """飞书自定义机器人, optionally with 签名校验 (signature in the body). Custom bots can only
    @mention by open_id, so mention_mobiles is not used here."""

    code_keys = ("code", "StatusCode")  # older endpoints answer with StatusCode only
    retry_codes = frozenset({11232})  # frequency limited

    def __init__(self, url: str, *, secret: str | None = None, name: str = "feishu",
                 limiter: RateLimiter | None = None, timeout: float = TIMEOUT) -> None:
        super().__init__(url, name=name, limiter=limiter, timeout=timeout)
        self.secret = secret

    def send(self, message: Message) -> None:
        post = {"title": message.subject, "content": [[{"tag": "text", "text": message.body}]]}
        self._post({"msg_type": "post", "content": {"post": {"zh_cn": post}}})

    def _signed(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if not self.secret:
            return self.url, payload
        timestamp = str(int(time.time()))
        # Feishu keys the HMAC with "timestamp\nsecret" and signs an empty message.
        sign = _hmac_b64(f"{timestamp}\n{self.secret}".encode(), b"")
        return self.url, {"timestamp": timestamp, "sign": sign, **payload}
