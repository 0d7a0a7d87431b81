"""CLI argument errors that need no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli.main import main


def test_init_refuses_enroll_port_equal_to_cluster_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "node"
    rc = main(
        [
            "swarm",
            "init",
            "--listen-addr",
            "127.0.0.1:4883",
            "--enroll-port",
            "4883",
            "--data-dir",
            str(data),
        ]
    )
    assert rc == 1
    assert "--enroll-port 4883 is the cluster port" in capsys.readouterr().err
    assert not data.exists()  # nothing was created


def test_labels_are_key_value_flags_and_an_empty_key_names_the_flag() -> None:
    from agent.cli.flagvalues import parse_labels
    from agent.model.errors import ShoalError

    assert parse_labels(["zone=east", "ssd", "a=b=c"]) == {"zone": "east", "ssd": "", "a": "b=c"}
    assert parse_labels(None) == {}
    with pytest.raises(ShoalError, match='"=x" for "--label-add" flag'):
        parse_labels(["=x"], "--label-add")


def test_join_refuses_a_data_path_address_that_is_no_ip_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "node"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "swarm",
                "join",
                "--token",
                "SHOAL-1-x-y",
                "--data-path-addr",
                "edge-3.local",
                "--data-dir",
                str(data),
                "mqtts://127.0.0.1:4883",
            ]
        )
    assert exit_info.value.code == 125  # a flag value Docker cannot parse exits 125
    assert "'edge-3.local' is not an IP address" in capsys.readouterr().err
    assert not data.exists()


def test_scale_past_the_replica_limit_is_refused_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "node"  # no node here: a request would fail with another error
    rc = main(["service", "scale", "x=1000000000", "--detach", "--data-dir", str(data)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "replicas of x is 1,000,000,000; at most 10,000 are allowed" in err


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version_flag_prints_the_version_and_exits_zero_as_docker_does(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([flag])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("shoal ")
