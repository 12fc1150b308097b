"""Configuration: endpoint, timeout, opt-out, identity, session, context."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest

from migas_logging import config
from migas_logging.exceptions import ConfigurationError


class TestEndpoint:
    def test_default_is_hosted_server(self) -> None:
        """Without argument or variable, the hosted server is used."""
        assert "https://migas.nipreps.org" == config.resolve_endpoint()

    def test_argument_beats_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An explicit endpoint wins over MIGAS_ENDPOINT."""
        monkeypatch.setenv("MIGAS_ENDPOINT", "http://127.0.0.1:1")
        assert "http://127.0.0.1:2" == config.resolve_endpoint("http://127.0.0.1:2")

    def test_variable_beats_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """MIGAS_ENDPOINT is read when no argument is given."""
        monkeypatch.setenv("MIGAS_ENDPOINT", "http://127.0.0.1:9/")
        assert "http://127.0.0.1:9" == config.resolve_endpoint()

    @pytest.mark.parametrize(
        "given",
        ["https://example.org/graphql", "https://example.org/graphql/", "https://example.org/"],
    )
    def test_graphql_suffix_and_slash_stripped(self, given: str) -> None:
        """A trailing /graphql or slash is removed: the base URL remains."""
        assert "https://example.org" == config.resolve_endpoint(given)

    @pytest.mark.parametrize("bad", ["ftp://example.org", "example.org", "http://", "file:///x"])
    def test_bad_scheme_is_a_configuration_error(self, bad: str) -> None:
        """Only http(s) URLs with a host are accepted; the message names the value."""
        with pytest.raises(ConfigurationError, match="is not an http") as info:
            config.resolve_endpoint(bad)
        assert repr(bad) in str(info.value)
        assert isinstance(info.value, ValueError)

    def test_bad_variable_warns_once_and_turns_sending_off(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An end user's typo in MIGAS_ENDPOINT never stops the application and never
        falls back to the hosted server: one warning, telemetry off."""
        monkeypatch.setenv("MIGAS_ENDPOINT", "localhost:18080")
        with caplog.at_level("WARNING", logger="migas_logging"):
            assert config.UNUSABLE_ENDPOINT == config.resolve_endpoint()
            assert config.UNUSABLE_ENDPOINT == config.resolve_endpoint()
        warnings = [r.getMessage() for r in caplog.records if "MIGAS_ENDPOINT" in r.getMessage()]
        assert 1 == len(warnings), warnings
        assert "telemetry is off" in warnings[0]
        assert config.optout()

    def test_plain_http_off_machine_warns(self, caplog: pytest.LogCaptureFixture) -> None:
        """http:// to a non-loopback host is allowed but warned about."""
        config._warned_plain_http.discard("http://example.org")
        with caplog.at_level("WARNING", logger="migas_logging"):
            config.resolve_endpoint("http://example.org")
        assert "unencrypted" in caplog.text

    def test_loopback_http_does_not_warn(self, caplog: pytest.LogCaptureFixture) -> None:
        """http:// on loopback is the local collector: no warning."""
        with caplog.at_level("WARNING", logger="migas_logging"):
            config.resolve_endpoint("http://127.0.0.1:8080")
        assert "" == caplog.text


class TestTimeout:
    def test_default(self) -> None:
        """5 seconds by default."""
        assert 5.0 == config.resolve_timeout()

    def test_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """MIGAS_TIMEOUT is read."""
        monkeypatch.setenv("MIGAS_TIMEOUT", "0.5")
        assert 0.5 == config.resolve_timeout()

    def test_argument_beats_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An explicit timeout wins."""
        monkeypatch.setenv("MIGAS_TIMEOUT", "9")
        assert 2.0 == config.resolve_timeout(2)

    @pytest.mark.parametrize("bad", ["abc", "-1", "0", "nan", "inf", True])
    def test_invalid_is_an_error_not_a_default(self, bad: object) -> None:
        """An invalid timeout fails loudly, naming the value."""
        with pytest.raises(ConfigurationError, match="timeout"):
            config.resolve_timeout(bad)  # type: ignore[arg-type]

    def test_invalid_variable_warns_and_falls_back(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A bad MIGAS_TIMEOUT (typed by the end user) gets one warning and the default;
        the same value given in code still fails loudly."""
        monkeypatch.setenv("MIGAS_TIMEOUT", "five")
        with caplog.at_level("WARNING", logger="migas_logging"):
            assert 5.0 == config.resolve_timeout()
        assert any("MIGAS_TIMEOUT='five'" in r.getMessage() for r in caplog.records)
        with pytest.raises(ConfigurationError, match="timeout 'five'"):
            config.resolve_timeout("five")


class TestOptout:
    @pytest.mark.parametrize("value", ["1", "yes", "0", ""])
    def test_any_value_opts_out(self, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        """MIGAS_OPTOUT set to anything, even empty, means opt-out."""
        monkeypatch.setenv("MIGAS_OPTOUT", value)
        assert config.optout()
        assert config.Settings.resolve().optout

    def test_unset_is_opt_in(self) -> None:
        """Without the variable, telemetry is on."""
        assert not config.optout()


class TestIdentity:
    def test_user_id_created_with_mode_0600(self, xdg: Path) -> None:
        """The first call derives the id and saves it where the official client does."""
        uid = config.get_user_id()
        assert uid is not None
        path = xdg / "migas" / "user_id"
        assert uid == path.read_text()
        assert 0o600 == stat.S_IMODE(path.stat().st_mode)
        uuid.UUID(uid)

    def test_existing_file_is_reused(self, xdg: Path) -> None:
        """An id saved by the official client is read back, not regenerated."""
        (xdg / "migas").mkdir(parents=True)
        given = str(uuid.uuid4())
        (xdg / "migas" / "user_id").write_text(given + "\n")
        assert given == config.get_user_id()

    def test_corrupt_file_is_replaced(self, xdg: Path) -> None:
        """A file that is not a UUID is replaced by a derived id."""
        (xdg / "migas").mkdir(parents=True)
        (xdg / "migas" / "user_id").write_text("garbage")
        uid = config.get_user_id()
        assert uid is not None
        assert uid != "garbage"
        uuid.UUID(uid)

    def test_derivation_matches_official_client(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """UUID3 (DNS namespace) of user@domain, as migas-py computes it."""
        monkeypatch.setattr(config, "_username", lambda: "alice")
        monkeypatch.setattr("socket.getfqdn", lambda: "node12.cluster.example.edu")
        expected = str(uuid.uuid3(uuid.NAMESPACE_DNS, "alice@cluster.example.edu"))
        assert expected == config._derive_user_id()

    def test_derivation_falls_back_to_hostname(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a usable domain, user@hostname is used (as the official client)."""
        monkeypatch.setattr(config, "_username", lambda: "bob")
        monkeypatch.setattr("socket.getfqdn", lambda: "laptop.local")
        monkeypatch.setenv("HOSTNAME", "laptop")
        expected = str(uuid.uuid3(uuid.NAMESPACE_DNS, "bob@laptop"))
        assert expected == config._derive_user_id()

    def test_optout_reads_and_writes_nothing(
        self, monkeypatch: pytest.MonkeyPatch, xdg: Path
    ) -> None:
        """Under opt-out there is no id and no file."""
        monkeypatch.setenv("MIGAS_OPTOUT", "1")
        assert config.get_user_id() is None
        assert not xdg.exists()

    def test_session_id_is_stable_within_a_run(self) -> None:
        """One session UUID per process run."""
        first = config.get_session_id()
        assert first == config.get_session_id()
        uuid.UUID(first)

    def test_session_id_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """MIGAS_SESSION_ID joins this process to an existing session."""
        given = str(uuid.uuid4())
        monkeypatch.setenv("MIGAS_SESSION_ID", given.upper())
        assert given == config.get_session_id()

    def test_export_session_id(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """export_session_id puts the id where spawned children will read it."""
        monkeypatch.delenv("MIGAS_SESSION_ID", raising=False)
        sid = config.export_session_id()
        assert sid == os.environ["MIGAS_SESSION_ID"]
        monkeypatch.delenv("MIGAS_SESSION_ID")

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    def test_forked_child_keeps_the_session(self) -> None:
        """A forked child is part of the same run: same session id."""
        parent = config.get_session_id()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.write(write, config.get_session_id().encode())
            os._exit(0)
        os.close(write)
        child = os.read(read, 100).decode()
        os.waitpid(pid, 0)
        assert parent == child


class TestContext:
    def test_ci_detected(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """CI variables are detected like ci-info does."""
        for name in config._CI_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        assert not config.is_ci()
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
        assert config.is_ci()

    def test_ci_false_is_not_ci(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """CI=false does not count."""
        for name in config._CI_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("CI", "false")
        assert not config.is_ci()

    def test_context_fields(self) -> None:
        """The detected context carries ids, platform, container and CI."""
        ctx = config.detect_context()
        assert ctx.session_id == config.get_session_id()
        assert ctx.container in ("unknown", "docker", "apptainer")
        assert ctx.platform
        assert ctx.user_id is not None
