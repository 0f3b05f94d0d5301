"""The policy file's `channels:` entries, checked as plain data.

The policy check needs to refuse a bad channel without building one (no SMTP or HTTP code
here); notifications.channels builds the channel from the spec this returns.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("email", "wecom", "dingtalk", "feishu", "aliyun_sms", "tencent_sms")
# Text messages reach one person at their mobile, never a group (notifications/sms.py).
SMS_KINDS = ("aliyun_sms", "tencent_sms")
_DEFAULT_RATE = {"wecom": 20, "dingtalk": 20, "feishu": 100, "email": None,
                 "aliyun_sms": 100, "tencent_sms": 100}
# Each provider's SendSms endpoint and region; `url` overrides (a proxy, a test receiver).
SMS_DEFAULTS = {"aliyun_sms": ("https://dysmsapi.aliyuncs.com/", "cn-hangzhou"),
                "tencent_sms": ("https://sms.tencentcloudapi.com/", "ap-guangzhou")}


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    kind: str
    rate_per_minute: int | None
    # email
    host: str = ""
    port: int = 0
    sender: str = ""
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False
    timeout: float = 30.0
    # group bots; SMS (url: the provider's endpoint, secret: its AccessKey secret/SecretKey)
    url: str = ""
    secret: str | None = None
    # SMS: AccessKeyId (Alibaba Cloud) or SecretId (Tencent Cloud), region, SmsSdkAppId
    key_id: str | None = None
    region: str = ""
    app_id: str = ""


def parse_channel(name: str, spec: Mapping[str, Any]) -> ChannelSpec:
    """Check one entry of the `channels:` map and resolve its secrets.

    Secrets come only from environment variables named by `*_env` keys. Errors raise
    ValueError naming the channel, the key and what was expected."""

    def bad(key: str, expected: str) -> ValueError:
        return ValueError(f"channel {name!r}: key {key!r}: expected {expected}")

    def get(key: str, kind: type | tuple[type, ...], expected: str, default: Any = ...) -> Any:
        if key not in spec:
            if default is ...:
                raise bad(key, f"{expected} (missing)")
            return default
        value = spec[key]
        # bool is an int subclass; `port: true` is a typo, not port 1
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise bad(key, f"{expected}, got {value!r}")
        return value

    def env(key: str) -> str | None:
        var = get(key, str, "the name of an environment variable", None)
        if var is None:
            return None
        if not os.environ.get(var):
            raise bad(key, f"environment variable {var!r} to be set and non-empty")
        return os.environ[var]

    if not isinstance(spec, Mapping):
        raise ValueError(f"channel {name!r}: expected a mapping, got {type(spec).__name__}")
    kind = get("kind", str, f"one of {', '.join(KINDS)}")
    if kind not in KINDS:
        raise bad("kind", f"one of {', '.join(KINDS)}, got {kind!r}")
    for key in ("secret", "password", "access_key_id", "access_key_secret"):
        if key in spec:
            raise bad(key, f"no inline secrets; name an environment variable in {key}_env")
    rate = get("rate_per_minute", int, "a positive integer", _DEFAULT_RATE[kind])
    if rate is not None and rate < 1:
        raise bad("rate_per_minute", f"a positive integer, got {rate!r}")

    if kind == "email":
        use_ssl = get("ssl", bool, "true or false", False)
        starttls = get("starttls", bool, "true or false", False)
        if use_ssl and starttls:
            raise bad("starttls", "false when ssl is true (pick one)")
        return ChannelSpec(
            name=name, kind=kind, rate_per_minute=rate,
            host=get("host", str, "an SMTP host name"),
            port=get("port", int, "a port number", 465 if use_ssl else 587 if starttls else 25),
            sender=get("sender", str, "a From address"),
            username=env("username_env"), password=env("password_env"),
            starttls=starttls, ssl=use_ssl, timeout=get("timeout", (int, float), "seconds", 30.0))

    if kind in SMS_KINDS:
        return _sms(name, kind, rate, get, env, bad)

    url = get("url", str, "the bot webhook URL")
    if not url.startswith(("https://", "http://")):
        raise bad("url", f"an http(s) webhook URL, got {url[:30]!r}")
    secret = None if kind == "wecom" else env("secret_env")
    return ChannelSpec(name=name, kind=kind, rate_per_minute=rate, url=url, secret=secret)


def _sms(name: str, kind: str, rate: int | None, get: Any, env: Any, bad: Any) -> ChannelSpec:
    default_url, default_region = SMS_DEFAULTS[kind]
    url = get("url", str, "the provider's SendSms endpoint URL", default_url)
    if not url.startswith(("https://", "http://")):
        raise bad("url", f"an http(s) endpoint URL, got {url[:30]!r}")
    key_id, secret = env("access_key_id_env"), env("access_key_secret_env")
    for key, value in (("access_key_id_env", key_id), ("access_key_secret_env", secret)):
        if value is None:
            raise bad(key, "the name of an environment variable holding the "
                           f"{'AccessKey' if kind == 'aliyun_sms' else 'SecretId/SecretKey'} "
                           "(missing)")
    app_id = ""
    if kind == "tencent_sms":
        app_id = get("sdk_app_id", str, "the SmsSdkAppId, e.g. '1400006666' (quoted)")
        if not app_id.isdigit():
            raise bad("sdk_app_id", f"the digits of an SmsSdkAppId, got {app_id!r}")
    region = get("region", str, "a region id such as " + default_region, default_region)
    return ChannelSpec(name=name, kind=kind, rate_per_minute=rate, url=url, secret=secret,
                       key_id=key_id, region=region, app_id=app_id)
