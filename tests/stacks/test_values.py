"""The string forms of durations, sizes, CPUs, ports, volumes and devices."""

from __future__ import annotations

import pytest

from stacks.values import (
    PortEntry,
    VolumeEntry,
    parse_bytes,
    parse_cpus,
    parse_device,
    parse_duration,
    parse_port,
    parse_volume,
)

S = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("10s", 10 * S),
        ("1m30s", 90 * S),
        ("500ms", S // 2),
        ("1h", 3600 * S),
        ("1.5h", 5400 * S),
        ("2h45m", 9900 * S),
        ("300us", 300_000),
        ("10µs", 10_000),
        ("7ns", 7),
        ("0", 0),
        (0, 0),
        (".5s", S // 2),
    ],
)
def test_durations(text: object, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["10", 10, "10 s", "-1s", "1d", "s", "", "1m30", True, None])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration like '10s' or '1m30s'"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512M", 512 * 2**20),
        ("1g", 2**30),
        ("100kb", 100 * 1024),
        ("64m", 64 * 2**20),
        ("1.5g", 3 * 2**29),
        ("2048", 2048),
        (4096, 4096),
        ("1 GiB", 2**30),
        ("10b", 10),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["lots", "-1", -1, "1x", "1.g", True, 1.5])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ValueError, match="expected a size like '512M' or '1g'"):
        parse_bytes(text)


@pytest.mark.parametrize(
    ("text", "nano"),
    [("0.5", 500_000_000), (2, 2 * S), (0.25, 250_000_000), ("1.000000001", 1_000_000_001)],
)
def test_cpus(text: object, nano: int) -> None:
    assert parse_cpus(text) == nano


@pytest.mark.parametrize("text", ["half", "-1", "0.0000000001", True, "nan", "inf"])
def test_bad_cpus(text: object) -> None:
    with pytest.raises(ValueError, match="expected a number of CPUs"):
        parse_cpus(text)


@pytest.mark.parametrize(
    ("spec", "entries"),
    [
        ("80", [PortEntry(80, 0, "tcp")]),
        ("8080:80", [PortEntry(80, 8080, "tcp")]),
        ("53:53/udp", [PortEntry(53, 53, "udp")]),
        ("127.0.0.1:8080:80", [PortEntry(80, 8080, "tcp", "127.0.0.1")]),
        ("[::1]:8080:80/tcp", [PortEntry(80, 8080, "tcp", "::1")]),
        ("0.0.0.0::80", [PortEntry(80, 0, "tcp", "0.0.0.0")]),
        (
            "9000-9002:9000-9002",
            [
                PortEntry(9000, 9000, "tcp"),
                PortEntry(9001, 9001, "tcp"),
                PortEntry(9002, 9002, "tcp"),
            ],
        ),
        ("7000-7001", [PortEntry(7000, 0, "tcp"), PortEntry(7001, 0, "tcp")]),
        ("8000-8001:80", [PortEntry(80, 8000, "tcp"), PortEntry(80, 8001, "tcp")]),
        ("5000:5000/SCTP", [PortEntry(5000, 5000, "sctp")]),
    ],
)
def test_port_short_syntax(spec: str, entries: list[PortEntry]) -> None:
    assert parse_port(spec) == entries


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("80800:80", "invalid published port '80800' in port '80800:80': ports are 1-65535"),
        ("http", "invalid container port 'http' in port 'http'"),
        ("80/icmp", "invalid protocol 'icmp' in port '80/icmp': use tcp, udp or sctp"),
        (
            "9000-9002:9000-9001",
            "invalid port '9000-9002:9000-9001': the ranges 9000-9002 and "
            "9000-9001 have different sizes",
        ),
        ("host:80:80", "invalid IP address 'host' in port 'host:80:80'"),
        ("8080:", "no container port in '8080:'"),
        ("90-80", "invalid container port range '90-80' in port '90-80': end before start"),
        ("0:80", "invalid published port '0' in port '0:80': ports are 1-65535"),
    ],
)
def test_bad_ports(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_port(spec)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("spec", "entry"),
    [
        ("/data", VolumeEntry("volume", "", "/data")),
        ("data:/data", VolumeEntry("volume", "data", "/data")),
        ("data:/data:ro", VolumeEntry("volume", "data", "/data", read_only=True)),
        ("data:/data:nocopy", VolumeEntry("volume", "data", "/data", nocopy=True)),
        ("/host:/ctr", VolumeEntry("bind", "/host", "/ctr")),
        ("./rel:/ctr:ro,rshared", VolumeEntry("bind", "./rel", "/ctr", True, "rshared")),
        ("~/cfg:/cfg:z", VolumeEntry("bind", "~/cfg", "/cfg")),
        ("/host:/ctr:ro,rw", VolumeEntry("bind", "/host", "/ctr")),
    ],
)
def test_volume_short_syntax(spec: str, entry: VolumeEntry) -> None:
    assert parse_volume(spec) == entry


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "invalid empty volume spec"),
        ("a::b", "invalid volume 'a::b': empty section between colons"),
        ("a:/b:ro:x", "invalid volume 'a:/b:ro:x': too many colons"),
        ("/a:/b:nocopy", "invalid volume '/a:/b:nocopy': nocopy applies to named volumes only"),
        (
            "data:/b:rshared",
            "invalid volume 'data:/b:rshared': rshared applies to bind mounts only",
        ),
        (
            "/a:/b:fast",
            "invalid volume '/a:/b:fast': unknown option 'fast' (use ro, rw, nocopy "
            "or a propagation like rshared)",
        ),
    ],
)
def test_bad_volumes(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_volume(spec)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("spec", "device"),
    [
        ("/dev/ttyUSB0", ("/dev/ttyUSB0", "/dev/ttyUSB0", "rwm")),
        ("/dev/ttyUSB0:/dev/ttyUSB0:rwm", ("/dev/ttyUSB0", "/dev/ttyUSB0", "rwm")),
        ("/dev/ttyUSB0:/dev/modem", ("/dev/ttyUSB0", "/dev/modem", "rwm")),
        ("/dev/i2c-1:r", ("/dev/i2c-1", "/dev/i2c-1", "r")),
    ],
)
def test_devices(spec: str, device: tuple[str, str, str]) -> None:
    assert parse_device(spec) == device


@pytest.mark.parametrize("spec", ["ttyUSB0", "/dev/a:/dev/b:rwx", "/a:/b:c:d", ""])
def test_bad_devices(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_device(spec)
