"""Delivery channels for rendered notifications: e-mail, WeCom/DingTalk/Feishu group bots and
Alibaba Cloud/Tencent Cloud SMS (notifications/sms.py).

Why not apprise for everything: apprise can't point these bots at a custom URL for tests,
sends WeCom only as plain text and doesn't sign Feishu. The bots live in notifications/bots.py.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import TYPE_CHECKING, Any, Protocol

from core.channels import SMS_KINDS, parse_channel

if TYPE_CHECKING:
    from notifications.bots import DingTalkChannel, FeishuChannel, WeComChannel

log = logging.getLogger(__name__)

__all__ = [
    "Channel", "DeliveryError", "DingTalkChannel", "EmailChannel", "FeishuChannel", "Message",
    "RateLimiter", "SmsTemplate", "WeComChannel", "build_channel",
]


@dataclass(frozen=True)
class SmsTemplate:
    """What a text message carries: providers send only templates they approved, filled in
    with values (named for Alibaba Cloud, in order for Tencent Cloud)."""

    template_id: str
    sign_name: str
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Message:
    subject: str
    body: str  # Markdown/plain text, zh-CN usually
    to: tuple[str, ...] = ()  # e-mail addresses for the email channel
    mention_mobiles: tuple[str, ...] = ()  # mainland mobiles to @mention in group bots
    phone: str = ""  # the mobile an SMS channel texts
    sms: SmsTemplate | None = None


class DeliveryError(Exception):
    """Raised by send(); `.retryable` says whether a later retry may succeed (network error,
    5xx, 429, bot rate limit) or not (bad config, 4xx, bot rejected the request)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Channel(Protocol):
    name: str

    def send(self, message: Message) -> None: ...


class RateLimiter:
    """At most `per_minute` acquisitions in any sliding 60 s window, shared by threads."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if per_minute < 1:
            raise ValueError(f"per_minute must be >= 1, got {per_minute!r}")
        self.per_minute = per_minute
        self._clock, self._sleep = clock, sleep
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a slot is free; return the seconds spent waiting."""
        waited = 0.0
        # Sleeping with the lock held queues waiters in turn instead of letting them race
        # for the slot that frees up; nobody else could send meanwhile anyway.
        with self._lock:
            while True:
                now = self._clock()
                while self._stamps and now - self._stamps[0] >= 60.0:
                    self._stamps.popleft()
                if len(self._stamps) < self.per_minute:
                    self._stamps.append(now)
                    return waited
                delay = self._stamps[0] + 60.0 - now
                self._sleep(delay)
                waited += delay


class EmailChannel:
    def __init__(self, host: str, port: int, sender: str, *, username: str | None = None,
                 password: str | None = None, starttls: bool = False, ssl: bool = False,
                 timeout: float = 30.0, name: str = "email",
                 limiter: RateLimiter | None = None) -> None:
        if starttls and ssl:
            raise ValueError(f"channel {name!r}: choose either starttls or ssl, not both")
        self.name, self.host, self.port, self.sender = name, host, port, sender
        self.username, self.password = username, password
        self.starttls, self.ssl, self.timeout, self.limiter = starttls, ssl, timeout, limiter

    def send(self, message: Message) -> None:
        if not message.to:
            raise DeliveryError(f"{self.name}: message has no recipients", retryable=False)
        mail = EmailMessage()
        mail["Subject"] = message.subject
        mail["From"] = self.sender
        mail["To"] = ", ".join(message.to)
        mail["Date"] = formatdate(localtime=True)
        # an explicit domain keeps make_msgid from doing a slow getfqdn() lookup
        mail["Message-ID"] = make_msgid(domain=parseaddr(self.sender)[1].rpartition("@")[2]
                                        or "propflow.local")
        # set_content would pick 8bit, which smtplib sends without negotiating 8BITMIME
        mail.set_content(message.body, cte="base64")
        if self.limiter:
            self.limiter.acquire()
        # smtplib's default TLS context skips certificate checks; insist on verification.
        context = ssl.create_default_context() if self.ssl or self.starttls else None
        try:
            smtp: smtplib.SMTP
            if self.ssl:
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                        context=context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.starttls:
                    smtp.starttls(context=context)
                if self.username:
                    smtp.login(self.username, self.password or "")
                refused = smtp.send_message(mail)
            if refused:  # others got it, so a retry would duplicate; just leave a trace
                log.warning("%s: some recipients refused: %s", self.name, refused)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(f"{self.name}: recipients refused: {exc.recipients}",
                                retryable=all(400 <= c < 500 for c in codes)) from exc
        except smtplib.SMTPResponseException as exc:  # auth, sender, data: 4xx is temporary
            raise DeliveryError(f"{self.name}: SMTP {exc.smtp_code} {exc.smtp_error!r}",
                                retryable=400 <= exc.smtp_code < 500) from exc
        except smtplib.SMTPNotSupportedError as exc:  # e.g. no STARTTLS: config, not luck
            raise DeliveryError(f"{self.name}: {exc}", retryable=False) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{self.name}: {exc!r}", retryable=True) from exc


def build_channel(name: str, spec: Mapping[str, Any]) -> Channel:
    """Build one entry of the policy file's `channels:` map (see module docs for examples).

    core.channels checks the entry (the policy check uses the same function), so a config
    error raises the same ValueError naming the channel, the key and what was expected."""
    checked = parse_channel(name, spec)
    limiter = RateLimiter(checked.rate_per_minute) if checked.rate_per_minute else None
    if checked.kind == "email":
        return EmailChannel(
            checked.host, checked.port, checked.sender, username=checked.username,
            password=checked.password, starttls=checked.starttls, ssl=checked.ssl,
            timeout=checked.timeout, name=name, limiter=limiter)

    if checked.kind in SMS_KINDS:
        from notifications import sms

        return sms.build(checked, limiter)

    from notifications import bots

    if checked.kind == "wecom":
        return bots.WeComChannel(checked.url, name=name, limiter=limiter)
    cls = bots.DingTalkChannel if checked.kind == "dingtalk" else bots.FeishuChannel
    return cls(checked.url, secret=checked.secret, name=name, limiter=limiter)


def __getattr__(attr: str) -> Any:
    # bots.py imports the types above, so it is loaded on first use rather than at import time;
    # that way importing either module first works.
    if attr in ("WeComChannel", "DingTalkChannel", "FeishuChannel"):
        from notifications import bots

        return getattr(bots, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
