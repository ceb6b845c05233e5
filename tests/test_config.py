from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from auditd.cli import main
from auditd.config import ConfigError, load_config, parse_config, redact_url
from auditd.inventory.facts import EXTRACTORS
from auditd.sources.kube.kinds import BY_NAME, LOOKED_AT_KINDS

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_is_valid_and_documents_every_section() -> None:
    config = load_config(ROOT / "config.example.toml")
    assert [c.name for c in config.clusters] == ["dr1", "dr2"]
    assert config.pairs[0].pools == ["replicapool"]
    text = (ROOT / "config.example.toml").read_text()
    for section in ("[watch]", "[slack]", "[alerts]", "[rules.pvc-on-secondary]", "[[pairs]]"):
        assert section in text
    # Every field of every section appears in the example, so it documents them all.
    for model in (config.watch, config.slack, config.alerts):
        for name in type(model).model_fields:
            assert name in text, f"config.example.toml does not document {name}"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"bogus": 1}, "bogus"),
        ({"clusters": [{"name": "dr1", "role": "primry"}]}, "clusters[0].role"),
        ({"clusters": [{"name": "DR 1", "role": "primary"}]}, "clusters[0].name"),
        ({"watch": {"read_timeout": "soon"}}, "watch.read_timeout"),
        ({"slack": {"tokn": "x"}}, "slack.tokn"),
        (
            {
                "alerts": {
                    "inhibit_rules": [
                        {"source_matchers": ["rule=~(("], "target_matchers": ["rule=x"]}
                    ]
                }
            },
            "alerts.inhibit_rules[0]",
        ),
        (
            {
                "alerts": {
                    "inhibit_rules": [
                        {"source_matchers": ["rule=x"], "target_matchers": ["colour=red"]}
                    ]
                }
            },
            "alerts.inhibit_rules[0]",
        ),
    ],
)
def test_errors_name_the_offending_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(raw)
    assert exc.value.key == key


def test_pairs_must_reference_one_primary_and_one_secondary() -> None:
    clusters = [
        {"name": "a", "role": "primary"},
        {"name": "b", "role": "primary"},
    ]
    with pytest.raises(ConfigError, match="one primary and one secondary"):
        parse_config({"clusters": clusters, "pairs": [{"name": "p", "clusters": ["a", "b"]}]})
    with pytest.raises(ConfigError, match="unknown cluster 'c'"):
        parse_config({"clusters": clusters, "pairs": [{"name": "p", "clusters": ["a", "c"]}]})


def test_a_hub_is_a_cluster_of_role_hub_that_a_pair_names() -> None:
    from auditd.daemon.scopes import Scopes
    from auditd.sources.kube.kinds import DR_CLUSTER, DR_POLICY, DRPC, PVC, kinds_for

    dr = [{"name": "a", "role": "primary"}, {"name": "b", "role": "secondary"}]
    hub = {"name": "h", "role": "hub"}
    cfg = parse_config(
        {"clusters": [*dr, hub], "pairs": [{"name": "p", "clusters": ["a", "b"], "hub": "h"}]}
    )
    assert [p.name for p in cfg.pairs_of("h")] == [p.name for p in cfg.pairs_of("a")] == ["p"]
    assert Scopes.of(cfg).of_cluster("h") == "pair/p"  # led with the pair it serves
    assert set(kinds_for("hub")) == {DRPC, DR_POLICY, DR_CLUSTER}
    assert PVC in kinds_for("primary") and DR_POLICY not in kinds_for("secondary")
    for raw, message in (
        ({"clusters": [*dr, hub], "pairs": [{"name": "p", "clusters": ["a", "b"]}]},
         "hub 'h' serves no pair"),
        ({"clusters": dr, "pairs": [{"name": "p", "clusters": ["a", "b"], "hub": "h"}]},
         "pairs[0].hub: unknown cluster 'h'"),
        ({"clusters": [*dr, {"name": "h", "role": "primary"}],
          "pairs": [{"name": "p", "clusters": ["a", "b"], "hub": "h"}]},
         "has role 'primary', not 'hub'"),
        ({"clusters": [*dr, {**hub, "ceph": {"transport": "exec"}}],
          "pairs": [{"name": "p", "clusters": ["a", "b"], "hub": "h"}]},
         "a hub holds no RBD images"),
    ):  # fmt: skip
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_config(raw)


def test_a_hub_of_several_pairs_is_a_scope_of_its_own() -> None:
    from auditd.daemon.scopes import Scopes

    clusters = [
        {"name": n, "role": r}
        for n, r in [("a", "primary"), ("b", "secondary"), ("c", "primary"), ("d", "secondary")]
    ]
    cfg = parse_config(
        {
            "clusters": [*clusters, {"name": "h", "role": "hub"}],
            "pairs": [
                {"name": "p1", "clusters": ["a", "b"], "hub": "h"},
                {"name": "p2", "clusters": ["c", "d"], "hub": "h"},
            ],
        }
    )
    assert Scopes.of(cfg).of_cluster("h") == "cluster/h"
    assert [p.name for p in cfg.pairs_of("h")] == ["p1", "p2"]


def test_n_pairs_and_cluster_in_one_pair_only() -> None:
    clusters = [
        {"name": n, "role": r}
        for n, r in [("a", "primary"), ("b", "secondary"), ("c", "primary"), ("d", "secondary")]
    ]
    cfg = parse_config(
        {
            "clusters": clusters,
            "pairs": [
                {"name": "p1", "clusters": ["a", "b"]},
                {"name": "p2", "clusters": ["c", "d"]},
            ],
        }
    )
    assert cfg.pair_of("d").name == "p2"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="already in pair"):
        parse_config(
            {
                "clusters": clusters,
                "pairs": [
                    {"name": "p1", "clusters": ["a", "b"]},
                    {"name": "p2", "clusters": ["a", "d"]},
                ],
            }
        )


def test_durations() -> None:
    cfg = parse_config(
        {"watch": {"server_timeout": "2m", "read_timeout": 45, "backoff_initial": "250ms"}}
    )
    assert cfg.watch.server_timeout == timedelta(minutes=2)
    assert cfg.watch.read_timeout == timedelta(seconds=45)
    assert cfg.watch.backoff_initial == timedelta(milliseconds=250)


def test_slack_token_from_env_or_file_and_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDITD_SLACK_TOKEN", "xoxb-very-secret-1")
    monkeypatch.setenv("AUDITD_SLACK_CHANNEL", "#dr")
    cfg = parse_config({"database_url": "postgresql://u:hunter2@db/auditd"})
    assert cfg.slack.token().get_secret_value() == "xoxb-very-secret-1"  # type: ignore[union-attr]
    shown = str(cfg.redacted())
    assert "xoxb-very-secret-1" not in shown and "hunter2" not in shown
    assert cfg.redacted()["slack"]["channel"] == "#dr"
    token_file = tmp_path / "token"
    token_file.write_text("xoxb-from-file\n")
    cfg = parse_config({"slack": {"token_file": str(token_file)}})
    assert cfg.slack.token().get_secret_value() == "xoxb-from-file"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"slack\.token_file"):
        parse_config({"slack": {"token_file": str(tmp_path / "missing")}}).slack.token()


def test_redact_url() -> None:
    assert redact_url("postgresql://u:p%40ss@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://auditd@db:5432/audit?password=S3CRET-q&sslmode=require",
        "postgresql://db/audit?sslmode=require&sslpassword=S3CRET-q",
        "postgresql://auditd:S3CRET-q@db/audit",
        "postgresql://auditd:p@S3CRET-q@db/audit",  # an unencoded '@' in the password
        "postgresql://:S3CRET-q@db/audit",
        "host=db dbname=audit password=S3CRET-q",
        "host=db password='S3CRET-q with space' user=u",
    ],
)
def test_every_credential_form_libpq_accepts_is_redacted(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "S3CRET" not in redact_url(url)
    assert "db" in redact_url(url)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"database_url = {json.dumps(url)}\n")  # a JSON string is a TOML string
    main(["config", "check", "-c", str(cfg)])
    out = capsys.readouterr()
    assert "S3CRET" not in out.out + out.err


def _example_with_kubeconfig(tmp_path: Path) -> Path:
    """config.example.toml with its kubeconfig path pointing at a real file."""
    from auditd.sim.fakekube import write_kubeconfig

    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(str(kubeconfig), {"dr1": "http://127.0.0.1:1", "dr2": "http://127.0.0.1:2"})
    text = (ROOT / "config.example.toml").read_text()
    cfg = tmp_path / "example.toml"
    cfg.write_text(text.replace("/etc/auditd/kubeconfig", str(kubeconfig)))
    return cfg


def test_config_check_loads_each_kubeconfig_and_context(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _example_with_kubeconfig(tmp_path)
    assert main(["config", "check", "-c", str(cfg)]) == 0
    capsys.readouterr()
    # A context the kubeconfig does not have, a kubeconfig that is not YAML, one that is missing.
    cfg.write_text(cfg.read_text().replace('context = "dr2"', 'context = "dr-two"'))
    assert main(["config", "check", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "clusters[1] (dr2)" in err and "dr-two" in err and "Traceback" not in err
    (tmp_path / "kubeconfig").write_text("users: [token: xyz: {]\n")
    assert main(["config", "check", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "clusters[0] (dr1): kubeconfig unreadable" in err and "Traceback" not in err
    (tmp_path / "kubeconfig").unlink()
    assert main(["config", "check", "-c", str(cfg)]) == 2
    assert "not found" in capsys.readouterr().err


def test_config_check_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDITD_SLACK_TOKEN", "xoxb-cli-secret")
    assert main(["config", "check", "-c", str(_example_with_kubeconfig(tmp_path))]) == 0
    out = capsys.readouterr()
    assert '"token": "**********"' in out.out and "xoxb-cli-secret" not in out.out + out.err
    bad = tmp_path / "bad.toml"
    bad.write_text('[[clusters]]\nname = "dr1"\nrole = "primary"\nkubeconfg = "x"\n')
    assert main(["config", "check", "-c", str(bad)]) == 2
    assert "clusters[0].kubeconfg: unknown key" in capsys.readouterr().err
    bad.write_text("not = [toml")
    assert main(["config", "check", "-c", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["config", "check", "-c", str(tmp_path / "nope.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    bad.write_text("[rules.no-such-rule]\nenabled = false\n")
    assert main(["config", "check", "-c", str(bad)]) == 2
    assert "rules.no-such-rule: unknown rule" in capsys.readouterr().err


def test_the_database_url_comes_from_a_secret_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "url"
    secret.write_text("postgresql://auditd:from-file@db/audit\n")
    assert (
        parse_config({"database_url_file": str(secret)}).effective_database_url()
        == "postgresql://auditd:from-file@db/audit"
    )
    monkeypatch.setenv("AUDITD_DATABASE_URL", "postgresql://auditd:from-env@db/audit")
    assert parse_config({}).effective_database_url().endswith("from-env@db/audit")
    monkeypatch.delenv("AUDITD_DATABASE_URL")
    assert parse_config({}).effective_database_url().startswith("sqlite:///")
    with pytest.raises(ConfigError, match="database_url_file"):
        parse_config({"database_url_file": str(tmp_path / "missing")}).effective_database_url()


BAD_URLS = [
    ('database_url = "postgresql://u:s3cret@127.0.0.1:notaport/x"', "database_url", "port"),
    ('database_url = "mysql://u:s3cret@db/x"', "database_url", "sqlite://"),
    ('database_url = "s3cret"', "database_url", "sqlite://"),
    ('[alerts.webhook]\nurl = "ftp//x/s3cret"', "alerts.webhook.url", "http://"),
    ('[alerts.alertmanager]\nurl = "http://:s3cret@/x"', "alerts.alertmanager.url", "no host"),
    ('[slack]\nbase_url = "https://slack.example:99999/api/"', "slack.base_url", "port"),
]


@pytest.mark.parametrize(("toml", "key", "why"), BAD_URLS)
@pytest.mark.parametrize("command", [["config", "check"], ["status"], ["report", "--since", "1h"]])
def test_a_bad_url_is_one_line_naming_its_key_never_the_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, key: str, why: str,
    command: list[str],
) -> None:  # fmt: skip
    cfg = tmp_path / "auditd.toml"
    cfg.write_text(toml + "\n")
    assert main([*command, "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and key in err and why in err, err
    assert "s3cret" not in err


@pytest.mark.parametrize("env", ["AUDITD_DATABASE_URL", "AUDITD_SLACK_WEBHOOK"])
def test_a_bad_url_from_the_environment_is_named_by_its_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    monkeypatch.setenv(env, "postgresql://u:s3cret@h:70000/x")
    cfg = tmp_path / "auditd.toml"
    cfg.write_text('log_level = "INFO"\n')
    assert main(["config", "check", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"${env}" in err and "s3cret" not in err, err


def test_the_config_names_every_watched_kind_and_only_those() -> None:
    """Kind names had five owners (issue 21): the config's list must be the watch catalogue's,
    and every kind looked at (the watched ones, and StorageClass for preflight) has its fact
    extractor, and only those."""
    assert parse_config({"watch": {"label_selectors": {k: "app=x" for k in BY_NAME}}})
    with pytest.raises(ConfigError, match="not a watched kind: StorageClass"):
        parse_config({"watch": {"label_selectors": {"StorageClass": "app=x"}}})
    assert set(EXTRACTORS) == {k.kind for k in LOOKED_AT_KINDS} > set(BY_NAME)


def test_a_watched_kind_without_facts_stops_the_start_saying_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: a kind in the watch catalogue with no facts extractor would be stored as
    nothing; `auditd run` refuses to start, in one line naming the kind and where to add it."""
    from auditd.sources.kube import kinds
    from auditd.sources.kube.kinds import Kind

    mirror = Kind("ceph.rook.io", "v1", "cephrbdmirrors", "CephRBDMirror", True, False)
    monkeypatch.setattr(kinds, "ALL_KINDS", (*kinds.ALL_KINDS, mirror))
    cfg = tmp_path / "auditd.toml"
    cfg.write_text(f'database_url = "sqlite:///{tmp_path / "h.db"}"\n')
    assert main(["run", "-c", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "no facts extractor for watched kind(s) CephRBDMirror" in err, err
    assert "inventory/facts.py" in err and "Traceback" not in err
    assert not (tmp_path / "h.db").exists()  # refused before anything was opened


def test_the_examples_inhibit_rules_are_the_built_in_defaults() -> None:
    """config.example.toml shows the default inhibit rules commented out (setting any replaces
    them): uncommented, they must be what auditd runs with."""
    import tomllib

    text = (ROOT / "config.example.toml").read_text()
    start = text.index("# [[alerts.inhibit_rules]]")
    block = text[start : text.index("\n\n", start)]
    raw = tomllib.loads("[alerts]\n" + "\n".join(line[2:] for line in block.splitlines()))
    assert len(raw["alerts"]["inhibit_rules"]) == 2
    assert parse_config(raw).alerts.inhibit_rules == parse_config({}).alerts.inhibit_rules


@pytest.mark.parametrize(
    "matcher", ['rule="split-brian"', 'rule=~"split-brain|rpo-exceded"', "rule!=audit-blindspot"]
)
def test_an_inhibit_rule_naming_no_rule_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], matcher: str
) -> None:
    """A misspelt rule id would make the inhibit rule hold nothing back, silently: `config
    check` (and `auditd run`) says which one, in one line. Globs and real regexes pass."""
    cfg = tmp_path / "auditd.toml"
    cfg.write_text(
        "[[alerts.inhibit_rules]]\n"
        f"source_matchers = ['{matcher}']\n"
        "target_matchers = ['severity=warning', 'rule=~\"secondary-.*\"', 'rule!=rpo-*']\n"
        'equal = ["pair"]\n'
    )
    assert main(["config", "check", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "alerts.inhibit_rules[0]" in err and "no rule" in err and "known:" in err, err
