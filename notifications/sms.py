"""Text messages: Alibaba Cloud SMS (阿里云短信, dysmsapi SendSms 2017-05-25) and Tencent Cloud
SMS (腾讯云短信, SendSms 2021-01-11). Owners have no inbox: their one-tap link goes this way.

Both providers send only templates they approved beforehand, filled in with values; the
policy's `sms:` section names each event's template and its values (models/outbox.py writes
them into the row). Each request is signed as the provider documents it: Alibaba Cloud's RPC
signature (HMAC-SHA1 over the sorted, percent-encoded parameters, in `Signature`), Tencent
Cloud's TC3-HMAC-SHA256 `Authorization` header. Error texts never carry the mobile number.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from core.channels import ChannelSpec
from core.faults import mask
from notifications.channels import DeliveryError, Message, RateLimiter

TIMEOUT = 10.0


def percent_encode(text: str) -> str:
    """RFC 3986 as Alibaba Cloud signs it: space is %20, * is %2A, ~ stays as it is."""
    return quote(text, safe="-_.~")


def aliyun_signature(secret: str, method: str, params: dict[str, str]) -> str:
    """Base64(HMAC-SHA1(secret + "&", METHOD & %2F & encode(sorted, encoded query)))."""
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}"
                         for k, v in sorted(params.items()))
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac256(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def tc3_authorization(secret_id: str, secret_key: str, *, host: str, service: str,
                      timestamp: int, payload: bytes, content_type: str) -> str:
    """Tencent Cloud API 3.0's TC3-HMAC-SHA256: a canonical POST request over content-type
    and host, signed with a key derived from the date (UTC), the service and tc3_request."""
    day = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    signed_headers = "content-type;host"
    canonical = "\n".join(["POST", "/", "", f"content-type:{content_type}\nhost:{host}\n",
                           signed_headers, _sha256_hex(payload)])
    scope = f"{day}/{service}/tc3_request"
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), scope,
                         _sha256_hex(canonical.encode())])
    key = _hmac256(_hmac256(_hmac256(f"TC3{secret_key}".encode(), day), service), "tc3_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}")


class _SmsChannel:
    def __init__(self, url: str, *, key_id: str, secret: str, region: str, name: str,
                 limiter: RateLimiter | None = None, timeout: float = TIMEOUT,
                 clock: Callable[[], float] = time.time) -> None:
        self.url, self.key_id, self.secret, self.region = url, key_id, secret, region
        self.name, self.limiter, self.timeout, self._clock = name, limiter, timeout, clock

    def send(self, message: Message) -> None:
        if not message.phone or message.sms is None:
            raise DeliveryError(f"{self.name}: a text needs a mobile and a template "
                                "(policy sms.templates)", retryable=False)
        if self.limiter:
            self.limiter.acquire()
        # Signed after the wait, so the provider sees a fresh timestamp.
        content, headers = self._request(message)
        try:
            resp = httpx.post(self.url, content=content, headers=headers, timeout=self.timeout)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise DeliveryError(f"{self.name}: bad endpoint URL: {exc}", retryable=False) from exc
        except httpx.TransportError as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {mask(str(exc))}",
                                retryable=True) from exc
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise DeliveryError(f"{self.name}: HTTP {resp.status_code}", retryable=True)
        if not isinstance(data, dict):
            raise DeliveryError(f"{self.name}: HTTP {resp.status_code}, not JSON: "
                                f"{mask(resp.text[:200])!r}", retryable=False)
        self._check(data)

    def _request(self, message: Message) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError

    def _check(self, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def _refused(self, code: str, text: str, retryable: bool) -> DeliveryError:
        return DeliveryError(f"{self.name}: provider answered {code}: {mask(text)[:200]}",
                             retryable=retryable)


class AliyunSmsChannel(_SmsChannel):
    """阿里云短信服务 SendSms, POSTed as a form with the RPC signature among its parameters."""

    # Flow control (per number and minute/hour), throttling and the provider's own faults
    # pass; a bad signature, template or number does not.
    RETRY = ("isv.BUSINESS_LIMIT_CONTROL", "Throttling", "isp.SYSTEM_ERROR",
             "ServiceUnavailable", "InternalError")

    def __init__(self, url: str = "https://dysmsapi.aliyuncs.com/", *, key_id: str,
                 secret: str, region: str = "cn-hangzhou", name: str = "aliyun_sms",
                 limiter: RateLimiter | None = None, timeout: float = TIMEOUT,
                 clock: Callable[[], float] = time.time,
                 nonce: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        super().__init__(url, key_id=key_id, secret=secret, region=region, name=name,
                         limiter=limiter, timeout=timeout, clock=clock)
        self._nonce = nonce

    def _request(self, message: Message) -> tuple[bytes, dict[str, str]]:
        assert message.sms is not None
        at = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        params = {
            "AccessKeyId": self.key_id, "Action": "SendSms", "Format": "JSON",
            "PhoneNumbers": message.phone, "RegionId": self.region,
            "SignName": message.sms.sign_name, "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": self._nonce(), "SignatureVersion": "1.0",
            "TemplateCode": message.sms.template_id,
            "TemplateParam": json.dumps(dict(message.sms.params), ensure_ascii=False,
                                        separators=(",", ":")),
            "Timestamp": at, "Version": "2017-05-25",
        }
        params["Signature"] = aliyun_signature(self.secret, "POST", params)
        body = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in params.items())
        return body.encode(), {"Content-Type": "application/x-www-form-urlencoded",
                               "Accept": "application/json"}

    def _check(self, data: dict[str, Any]) -> None:
        code = str(data.get("Code", ""))
        if code != "OK":
            raise self._refused(code, str(data.get("Message", "")),
                                code.startswith(self.RETRY))


class TencentSmsChannel(_SmsChannel):
    """腾讯云短信 SendSms (API 3.0, 2021-01-11): a JSON POST with a TC3-HMAC-SHA256 header."""

    CONTENT_TYPE = "application/json; charset=utf-8"
    RETRY = ("InternalError", "RequestLimitExceeded", "LimitExceeded.PhoneNumberThirtySecondLimit",
             "LimitExceeded.PhoneNumberOneHourLimit", "LimitExceeded.AppGlobalDailyLimit")

    def __init__(self, url: str = "https://sms.tencentcloudapi.com/", *, key_id: str,
                 secret: str, app_id: str, region: str = "ap-guangzhou",
                 name: str = "tencent_sms", limiter: RateLimiter | None = None,
                 timeout: float = TIMEOUT, clock: Callable[[], float] = time.time) -> None:
        super().__init__(url, key_id=key_id, secret=secret, region=region, name=name,
                         limiter=limiter, timeout=timeout, clock=clock)
        self.app_id = app_id

    def _request(self, message: Message) -> tuple[bytes, dict[str, str]]:
        assert message.sms is not None
        phone = message.phone if message.phone.startswith("+") else f"+86{message.phone}"
        payload = json.dumps({
            "PhoneNumberSet": [phone], "SmsSdkAppId": self.app_id,
            "SignName": message.sms.sign_name, "TemplateId": message.sms.template_id,
            "TemplateParamSet": [value for _, value in message.sms.params],
        }, ensure_ascii=False, separators=(",", ":")).encode()
        host = urlsplit(self.url).netloc
        timestamp = int(self._clock())
        return payload, {
            "Authorization": tc3_authorization(self.key_id, self.secret, host=host,
                                               service="sms", timestamp=timestamp,
                                               payload=payload,
                                               content_type=self.CONTENT_TYPE),
            "Content-Type": self.CONTENT_TYPE, "Host": host, "X-TC-Action": "SendSms",
            "X-TC-Version": "2021-01-11", "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": self.region,
        }

    def _check(self, data: dict[str, Any]) -> None:
        response = data.get("Response")
        if not isinstance(response, dict):
            raise self._refused("?", json.dumps(data, ensure_ascii=False), False)
        error = response.get("Error")
        if isinstance(error, dict):
            code = str(error.get("Code", ""))
            raise self._refused(code, str(error.get("Message", "")), code.startswith(self.RETRY))
        for status in response.get("SendStatusSet") or [{"Code": "?", "Message": "no status"}]:
            code = str(status.get("Code", ""))
            if code != "Ok":
                raise self._refused(code, str(status.get("Message", "")),
                                    code.startswith(self.RETRY))


def build(spec: ChannelSpec, limiter: RateLimiter | None) -> _SmsChannel:
    """The channel of a checked `channels:` entry of an SMS kind (core/channels.py)."""
    assert spec.key_id and spec.secret
    if spec.kind == "aliyun_sms":
        return AliyunSmsChannel(spec.url, key_id=spec.key_id, secret=spec.secret,
                                region=spec.region, name=spec.name, limiter=limiter)
    return TencentSmsChannel(spec.url, key_id=spec.key_id, secret=spec.secret,
                             app_id=spec.app_id, region=spec.region, name=spec.name,
                             limiter=limiter)
