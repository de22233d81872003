"""Limits and settings of the service, in one typed record.

Every resource a client can make the server spend is bounded here: bytes per upload, decoded
frames and pixels per frame (every decoded frame, not only the one the header describes), the
model's work per job (forward passes), queued jobs, finished jobs kept on disk, concurrent
streams (in all and per client address, as queued jobs and uploads), the size of one WebSocket message, how long a silent or non-reading stream is kept
open, and how long and how many connections may sit without finishing their request headers. The defaults suit one
CPU machine serving a few clients; ``videoxai serve`` exposes the common ones as options.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator


def _ascii_label(label: str) -> str:
    """One label of a host name as browsers write it in ``Host`` (UTS 46, IDNA 2008: 'straße' is
    xn--strae-oqa, as Chrome and Firefox send it, where Python's IDNA 2003 codec wrote 'strasse').
    The ``idna`` package comes with httpx (the serve extra); without it, Python's codec."""
    try:
        import idna
    except ImportError:  # pragma: no cover
        return label.encode("idna").decode("ascii")
    try:
        return idna.encode(label, uts46=True).decode("ascii")
    except idna.IDNAError as e:
        raise UnicodeError(str(e)) from None


def _is_address(name: str) -> bool:
    """An IP address (the one ``videoxai serve --host`` listens on: ``::1`` is no name)."""
    try:
        ipaddress.ip_address(name.strip("[]"))
        return True
    except ValueError:
        return False


#: a host name as the Host check compares it, or a ``.suffix`` (a domain and its subdomains)
_HOST_NAME = re.compile(r"\.?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")


class ServeSettings(BaseModel):
    """Settings of one server (immutable once the app is built).

    Attributes:
        api_key: if set, every API request must carry it (header ``X-API-Key`` or
            ``Authorization: Bearer …``; WebSocket clients may instead put it in the ``api_key``
            field of their first message, because browsers cannot set headers on a WebSocket;
            the legacy ``api_key`` query parameter still works and is masked in logs).
        max_upload_mb: largest accepted upload body.
        max_frames: most frames decoded from one upload.
        max_pixels: most pixels (width × height) of one frame, uploads and streams alike.
        max_side: longest accepted frame side.
        max_window_mb: most frames one stream window may hold (window × width × height × 3 bytes),
            for windows longer than the model's own: a model that takes any length accepts windows
            of up to ``max_frames`` frames, and 1800 full-HD frames are 11 GiB, held by the stream
            and copied again while they are explained.
        max_queued_jobs: uploads waiting or running at once; more are refused with 503.
        max_queued_jobs_per_client: jobs waiting or running at once from one client address; more
            are refused with 429 ``client_limit`` (one address that submitted a job as each ended
            kept the queue full, and every other client got 503 for as long as it liked).
        max_jobs_kept: finished jobs whose results stay available; the oldest of the client
            address that keeps the most are deleted first (one client's many jobs do not delete
            the others' results).
        max_streams: concurrent WebSocket streams; more are refused with a ``busy`` error.
        max_streams_per_client: concurrent streams from one client address; more are refused with
            a ``client_limit`` error (close code 1013; one address could hold every stream slot).
        stream_idle_timeout_s: a stream that sends nothing for this long while none of its
            windows is being explained or waits to be is closed, and one that
            has not read a message this long after it was sent is aborted (a ping after each
            message: :class:`~videoxai.serve.transport.WebSocketProtocol`).
        auth_timeout_s: with an ``api_key``, a stream that has sent no key (header or first
            message) within this long is closed; it holds no stream slot meanwhile, and at most
            ``max_pending_connections`` such streams wait at once (a newer one closes the oldest).
        stream_smoothing: default weight of the newest window in the maps' moving average.
        max_forward_passes: most clips one job (all its windows) or one stream window may send
            through the model; requests estimated above it are refused when submitted, and an
            explanation that passes it anyway is stopped.
        max_batch_size: most clips a request may send through the model at once (the
            ``batch_size`` / ``internal_batch_size`` options): memory grows with it, the result
            does not, so larger values are refused when submitted.
        max_result_mb: largest result of one job (its maps, every window's, are held in memory
            until it ends, then written as one JSON file): estimated when submitted, enforced
            while it runs.
        header_timeout_s: a connection that has not sent complete request headers within this
            long is closed (slow-header clients).
        body_timeout_s: an upload that sends no byte for this long is abandoned (408), and a
            client that reads no byte of an answer for this long is disconnected.
        min_upload_rate: bytes per second an upload must average once it has run for
            ``body_timeout_s`` (408 below it): a byte every few seconds never stalls, and held its
            connection for days.
        max_uploads: uploads being received at once; more are refused with 503 (slow uploads
            then hold at most these connections, not every one the server takes).
        max_uploads_per_client: uploads being received at once from one client address; more
            are refused with 429 ``client_limit`` (one client's slow uploads, at ``min_upload_rate``, held every
            one of ``max_uploads`` for as long as 200 MiB take at 1 KiB/s: days).
        max_requests_per_client: HTTP requests of one client address in progress at once (a
            download, an upload, a status poll); more are refused with 429 ``client_limit``
            (downloads read slowly held a connection each, and one address holding every
            connection the server takes had every other client refused with 503).
        max_pending_per_client: connections of one client address still sending their
            headers; a newer one closes the oldest.
        max_pending_connections: the same across all clients; also the most streams waiting to
            authenticate at once.
        max_header_bytes: largest request line plus headers (431 ``headers_too_large`` above it, 400
            when they arrive in pieces).
        shutdown_timeout_s: on SIGTERM, how long running work may finish before it is cancelled.
        allowed_origins: browser origins, besides the server's own, whose pages may open a
            stream (WebSocket ``Origin`` check; clients that send no Origin are not browsers).
        allowed_hosts: names the server answers to besides IP addresses and ``localhost``
            (``Host`` header check against DNS rebinding, :mod:`videoxai.core.hosts`):
            ``"myhost.lan"``, ``".corp.example"`` (a domain and its subdomains) or ``"*"``.
        forwarded_allow_ips: addresses or networks (``"10.0.0.5"``, ``"10.0.0.0/24"``, ``"*"``) of
            reverse proxies whose ``X-Forwarded-For`` (and ``X-Forwarded-Proto``) names the client;
            none by default, so a client is the address it connects from. uvicorn trusted the
            header from ``127.0.0.1`` and ``::1``: any program on the server's machine could name
            a new client with each request and pass every per-client limit, or name another
            client and take its slots.
        map_size: default longest side of the downsampled spatial maps sent to clients.
        overlay_max_side: overlay videos of uploads are drawn with at most this longer side
            (drawing and encoding full-HD overlays would cost more than explaining them).
        default_method: the method used when a client names none.
        work_dir: where uploads and results are written (a fresh temporary folder if ``None``,
            deleted when the server stops). A server restarted on the same folder serves its
            finished jobs again; jobs it left queued or running are reported failed.
    """

    # inf passed every bound (gt=0): `--max-upload-mb inf` served, and every upload failed with a
    # 500 OverflowError (int(inf) bytes); an infinite timeout overflowed the event loop's timers
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    api_key: str | None = None
    max_upload_mb: float = Field(200.0, gt=0)
    max_frames: int = Field(1800, ge=1)
    max_pixels: int = Field(1920 * 1080, ge=1)
    max_side: int = Field(4096, ge=1)
    max_window_mb: float = Field(256.0, gt=0)
    max_queued_jobs: int = Field(8, ge=1)
    max_queued_jobs_per_client: int = Field(4, ge=1)
    max_jobs_kept: int = Field(32, ge=1)
    max_streams: int = Field(8, ge=1)
    max_streams_per_client: int = Field(4, ge=1)
    stream_idle_timeout_s: float = Field(30.0, gt=0)
    auth_timeout_s: float = Field(5.0, gt=0)
    stream_smoothing: float = Field(0.5, gt=0, le=1)
    max_forward_passes: int = Field(10_000, ge=1)
    max_batch_size: int = Field(64, ge=1)
    max_result_mb: float = Field(256.0, gt=0)
    header_timeout_s: float = Field(10.0, gt=0)
    body_timeout_s: float = Field(30.0, gt=0)
    min_upload_rate: float = Field(1024.0, ge=0)
    max_uploads: int = Field(16, ge=1)
    max_uploads_per_client: int = Field(4, ge=1)
    max_requests_per_client: int = Field(32, ge=1)
    max_pending_per_client: int = Field(8, ge=1)
    max_pending_connections: int = Field(64, ge=1)
    max_header_bytes: int = Field(16 * 1024, ge=1024)
    shutdown_timeout_s: float = Field(10.0, gt=0)
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    forwarded_allow_ips: tuple[str, ...] = ()
    map_size: int = Field(32, ge=4, le=256)
    overlay_max_side: int = Field(640, ge=16)
    default_method: str = "staa"
    work_dir: str | None = None

    @field_validator("api_key")
    @classmethod
    def _a_key(cls, value: str | None) -> str | None:
        """A key is not empty: ``--api-key "$KEY"`` with ``KEY`` unset served with the key ``""``,
        which ``Authorization: Bearer`` or ``?api_key=`` (empty) gave, while the server said that
        a key was required."""
        if value is not None and not value.strip():
            raise ValueError("the key is empty (a variable set to nothing?); give a key, or none for a server "
                             "that needs no key")
        # a key read from a file with its final line break (a Kubernetes secret, an env file) was
        # a 401 for every HTTP request: header values are trimmed and cannot hold control characters
        if value is not None and (value != value.strip() or any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value)):
            raise ValueError("the key starts or ends with a space or line break, or holds a control character, "
                             "which no HTTP header can carry (read from a file with its final newline?); "
                             "remove them")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Each entry a name, a ``.suffix`` or ``*``: an empty entry (``--allowed-host "$HOST"`` with
        ``HOST`` unset), a URL or a name with a port matched no request, silently, and ``"."``
        matched every name written with its final dot (``evil.example.``)."""
        out = []
        for entry in value:
            name = entry.strip().lower()
            if not name.isascii():
                # an international name ('bücher.example'): browsers send it in its ASCII form
                # (xn--bcher-kva.example); it was refused as having 'a scheme, port or path'
                try:
                    name = ".".join(_ascii_label(label) if label else "" for label in name.split("."))
                except UnicodeError:
                    raise ValueError(f"{entry!r} is not a host name: an international name must be one IDNA "
                                     "can write in ASCII (letters, digits and hyphens per label)") from None
            if name != "*" and not _HOST_NAME.fullmatch(name) and not _is_address(name):
                raise ValueError(f"{entry!r} is not a host name (e.g. myhost.lan, .corp.example for a domain and "
                                 "its subdomains, or * for any): no scheme, port or path")
            out.append(name)
        return tuple(out)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Each entry an IP address or network (``"*"``: any); networks as uvicorn parses them.

        uvicorn takes an entry it cannot parse as a literal that matches no address, and a network
        with host bits set (``10.0.0.1/24``) as such a literal: a typo trusted no proxy, silently.
        """
        if "*" in value:
            return ("*",)
        out = []
        for entry in value:
            entry = entry.strip()
            try:
                out.append(str(ipaddress.ip_network(entry, strict=False)) if "/" in entry
                           else str(ipaddress.ip_address(entry)))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/24, *)") \
                    from None
        return tuple(out)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_window_bytes(self) -> int:
        return int(self.max_window_mb * 2**20)

    @property
    def max_result_bytes(self) -> int:
        return int(self.max_result_mb * 2**20)

    @property
    def max_message_bytes(self) -> int:
        """Largest WebSocket message: one raw RGB frame at the pixel limit plus its header."""
        return self.max_pixels * 3 + 64 * 1024

    def public(self) -> dict:
        """The limits a client may see (no secrets)."""
        d = self.model_dump(exclude={"api_key", "work_dir", "forwarded_allow_ips"})
        d["api_key_required"] = self.api_key is not None
        d["max_message_bytes"] = self.max_message_bytes
        return d
