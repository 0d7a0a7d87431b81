"""A stack sent as bytes (deploy by topic) is loaded without reading any file."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks import StackError, load_stack, load_stack_text

FILE_SECRET = b"""\
services:
  db:
    image: x
    secrets: [db_password]
secrets:
  db_password:
    file: /etc/shadow
"""


def test_file_secrets_need_the_deploying_machine() -> None:
    with pytest.raises(StackError) as caught:
        load_stack_text(FILE_SECRET, stack_name="app", filename="db.yml")

    assert str(caught.value) == (
        "db.yml:7:5: secrets.db_password.file: secret file '/etc/shadow' is read from the "
        "deploying machine: run `shoal stack deploy -c FILE NAME` on a machine that has the "
        "file, or use 'external' or 'environment' instead"
    )


def test_env_files_are_not_read_either() -> None:
    with pytest.raises(StackError) as caught:
        load_stack_text(
            "services:\n  web:\n    image: x\n    env_file: web.env\n", stack_name="app"
        )
    assert "env_file 'web.env' is read from the deploying machine" in str(caught.value)


def test_relative_bind_mounts_need_a_directory() -> None:
    with pytest.raises(StackError) as caught:
        load_stack_text(
            "services:\n  web:\n    image: x\n    volumes: ['./data:/data']\n", stack_name="app"
        )
    assert str(caught.value) == (
        "stack.yml:4:15: services.web.volumes[0]: the bind mount source './data' is relative to "
        "the stack file's directory, which a stack sent as text does not have; use an "
        "absolute path"
    )


def test_secrets_from_environment_and_inline_configs_work() -> None:
    text = (
        "services:\n  web:\n    image: x\n    secrets: [token]\n    configs: [motd]\n"
        "secrets:\n  token:\n    environment: TOKEN\n"
        "configs:\n  motd:\n    content: hello\n"
    )
    spec = load_stack_text(text.encode(), stack_name="app", environ={"TOKEN": "t0k"})
    assert spec.secrets[0].data == b"t0k"
    assert spec.configs[0].data == b"hello"


def test_dotenv_is_not_read_for_text(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TAG=from-dotenv\n")
    text = "services:\n  web:\n    image: x:${TAG:-none}\n"
    assert (
        load_stack_text(text, stack_name="app").services[0].task_template.container.image
        == "x:none"
    )
    spec = load_stack([("stack.yml", text)], stack_name="app", environ={}, base_dir=tmp_path)
    assert spec.services[0].task_template.container.image == "x:from-dotenv"


def test_bytes_that_are_not_utf8_are_located() -> None:
    with pytest.raises(StackError) as caught:
        load_stack_text(b"services:\n  web:\n    image: \xff\n", stack_name="app")
    assert str(caught.value) == "stack.yml:3:12: expected UTF-8 text, found byte 0xff"


def test_secret_size_limits(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"x" * 500 * 1024)
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "ok.txt").write_bytes(b"x" * (500 * 1024 - 1))
    stack = tmp_path / "stack.yml"
    stack.write_text(
        "services:\n  web:\n    image: x\n"
        "secrets:\n  big: {file: big.bin}\n  empty: {file: empty.txt}\n  ok: {file: ok.txt}\n"
    )
    with pytest.raises(StackError) as caught:
        load_stack([stack], stack_name="app", environ={})
    assert [e.message for e in caught.value.errors] == [
        "secret data must be larger than 0 and less than 500 KB (512000 bytes); found 512000 bytes",
        "secret data must be larger than 0 and less than 500 KB (512000 bytes); found 0 bytes",
    ]
    assert [e.path for e in caught.value.errors] == ["secrets.big", "secrets.empty"]


def test_env_files_are_relative_to_the_first_file_and_must_exist(tmp_path: Path) -> None:
    (tmp_path / "app.env").write_text("FROM_FILE=1\n")
    stack = tmp_path / "stack.yml"
    stack.write_text(
        "services:\n  web:\n    image: x\n    env_file:\n      - app.env\n"
        "      - path: optional.env\n        required: false\n"
        "  db:\n    image: x\n    env_file: missing.env\n"
    )
    with pytest.raises(StackError) as caught:
        load_stack([stack], stack_name="app", environ={})
    assert caught.value.path == "services.db.env_file"
    assert caught.value.message == "cannot read env_file 'missing.env': No such file or directory"

    stack.write_text(stack.read_text().replace("    env_file: missing.env\n", ""))
    spec = load_stack([stack], stack_name="app", environ={})
    assert spec.service("web").task_template.container.env == ("FROM_FILE=1",)
