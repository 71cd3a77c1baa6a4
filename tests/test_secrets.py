"""Secrets never written: key names and value shapes are redacted in data, text and log records, and a real
launch with secrets in the environment and as overrides leaves none of them in any file or on the console."""
from __future__ import annotations

import logging

import pytest

from tests.helpers import TINY, launch

# Several key names and value shapes; each value is unique so a leak names its source.
OVERRIDE_SECRETS = {
    "+logger.api_key": "sk-proj-LoggerApiKey0123456789abcd",
    "+hf_token": "hf_OverrideHfToken0123456789ABCD",
    "+extra.wandb_key": "wandbkeyvalue-0001",
    "+extra.auth": "authvalue-0002",
    "+extra.access_key": "accesskeyvalue-0003",
    "+extra.private_key": "privatekeyvalue-0004",
    "+extra.db_password": "pw-with-dash-0005",
    "+extra.client_secret": "clientsecret-0006",
}
ENV_SECRETS = {
    "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",  # 40 hex: only its name marks it secret
    "HF_TOKEN": "hf_EnvironmentToken0123456789WXYZ",
}


@pytest.mark.parametrize("key", ["api_key", "apiKey", "hf_token", "HF_TOKEN", "access_token", "wandb_key",
                                 "auth", "authorization", "access_key", "aws_secret_access_key", "private_key",
                                 "password", "db_passwd", "client_secret", "credentials", "logger.api_key"])
def test_secret_key_names_are_redacted_in_data_and_text(key):
    from embedgrid.secrets import REDACTED, redact, redact_text

    assert redact({"outer": {key: "plainvalue1"}}) == {"outer": {key: REDACTED}}
    assert redact_text(f"+{key}=plainvalue1") == f"+{key}={REDACTED}"
    assert "plainvalue1" not in redact_text(f"{{'{key}': 'plainvalue1', 'x': 1}}")


@pytest.mark.parametrize("key", ["tokenizer", "max_tokens", "num_tokens", "author", "authors", "keywords",
                                 "lora_target_modules", "instruction", "pad_token_id",
                                 "eos_token", "token_ids"])
def test_ordinary_keys_are_kept(key):
    from embedgrid.secrets import redact, redact_text

    assert redact({key: "value1"}) == {key: "value1"}
    assert redact_text(f"{key}=value1") == f"{key}=value1"


@pytest.mark.parametrize("value", ["sk-abcdefghijklmnopqrstu123", "sk-proj-Abc123def456ghi789jkl0",
                                   "hf_AbCdEfGhIjKlMnOpQrStUv", "ghp_0123456789abcdefghijABCDEFGHIJ",
                                   "github_pat_11ABCDEFG0123456789_abcdefghijk", "xoxb-1234567890-abcdefghij",
                                   "AKIAABCDEFGHIJKLMNOP", "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2QT4",
                                   "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZg==", "AbCdEf0123GhIjKl4567MnOpQr89StUv"])
def test_token_shapes_are_redacted_under_any_key_and_in_text(value):
    from embedgrid.secrets import REDACTED, redact, redact_text

    assert redact({"model": {"checkpoint": value}}) == {"model": {"checkpoint": REDACTED}}
    assert redact_text(f"loading {value} now") == f"loading {REDACTED} now"


@pytest.mark.parametrize("text", ["multirun/default/tiny-mean-causal-seed0-ad0973be18",
                                  "revision 0123456789abcdef0123456789abcdef01234567",  # a commit, not a key
                                  "/tmp/pytest-of-root/pytest-12/test_every_file_under_the_run_0",
                                  "LeeDocumentSTS cosine_spearman=0.42 http://127.0.0.1:8080/x"])
def test_hashes_paths_and_scores_are_kept(text):
    from embedgrid.secrets import redact_text

    assert redact_text(text) == text


def test_environment_and_remembered_secrets_are_redacted_by_value(monkeypatch):
    from embedgrid.secrets import REDACTED, redact_text, remember_secrets

    monkeypatch.setenv("WANDB_API_KEY", ENV_SECRETS["WANDB_API_KEY"])
    assert redact_text(f"key {ENV_SECRETS['WANDB_API_KEY']}") == f"key {REDACTED}"
    remember_secrets(["+extra.my_token=remembered-0007"])
    assert redact_text("error: remembered-0007 rejected") == f"error: {REDACTED} rejected"


@pytest.fixture
def record_factory():
    """Restore logging's record factory after the test (install_log_redaction sets it process-wide)."""
    before = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(before)


def test_every_log_record_is_redacted_whatever_logger_or_handler(caplog, record_factory):
    from embedgrid.logger import install_log_redaction

    install_log_redaction()
    install_log_redaction()  # idempotent
    with caplog.at_level(logging.INFO):
        logging.getLogger("some.library").info("got %s", "+hf_token=hf_LogArgument0123456789ABCD")
        try:
            raise ValueError("bad key sk-TracebackSecret0123456789xyz")
        except ValueError:
            logging.getLogger("other").exception("failed")
    text = caplog.text
    assert "hf_LogArgument" not in text and "TracebackSecret" not in text
    assert "got +hf_token=<redacted>" in text and "ValueError: bad key <redacted>" in text


def test_wandb_logger_accepts_an_api_key_override_and_keeps_it_out_of_the_run(tmp_path, caplog):
    from embedgrid.logger import WandbLogger

    key = "0fedcba9876543210fedcba9876543210fedcba9"
    with caplog.at_level(logging.WARNING, logger="embedgrid.logger"):
        logger = WandbLogger(project="embedgrid-test", run_id="apikey0001", name="n", group="g",
                             run_config={"logger": {"api_key": key}}, directory=str(tmp_path), mode="offline",
                             init_timeout=20, api_key=key)
    assert logger.run is not None and "export WANDB_API_KEY instead" in caplog.text
    logger.finish()
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert not leaks


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["run", "multirun"])
def test_no_secret_in_any_file_under_the_run_directory_or_on_the_console(tmp_path, launch_env, mode):
    """Secrets in the environment and as overrides of several key names; a W&B (offline) cell runs to done; then
    every file under the run directory -- .hydra/*.yaml, multirun.yaml, summary.json, cell.json, launch.log, the
    .wandb run file and W&B's logs -- and stdout/stderr are searched for every secret value."""
    env = {**launch_env, **ENV_SECRETS}
    out = tmp_path / "out"
    where = [f"hydra.run.dir={out}"] if mode == "run" else ["-m", f"hydra.sweep.dir={out}", "analyze=false"]
    overrides = [f"{k}={v}" for k, v in OVERRIDE_SECRETS.items()]
    proc = launch([*where, *TINY, "logger=wandb", *overrides], env)
    (cell_json,) = out.rglob("cell.json")
    assert '"status": "done"' in cell_json.read_text()

    files = [p for p in out.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"config.yaml", "hydra.yaml", "overrides.yaml", "cell.json", "launch.log"} <= names
    assert any(p.suffix == ".wandb" for p in files), "the offline W&B run file is missing"
    if mode == "multirun":
        assert {"multirun.yaml", "summary.json"} <= names
    secrets = [*OVERRIDE_SECRETS.values(), *ENV_SECRETS.values()]
    leaks = [(p.relative_to(out), s) for p in files for s in secrets if s.encode() in p.read_bytes()]
    leaks += [("console", s) for s in secrets if s in proc.stdout + proc.stderr]
    assert not leaks
    overrides_yaml = next(p for p in files if p.name == "overrides.yaml").read_text()
    assert "+hf_token=<redacted>" in overrides_yaml and "model=tiny" in overrides_yaml  # redacted, not dropped


def test_the_job_return_that_submitit_pickles_is_redacted():
    """submitit pickles the JobReturn (config + overrides) into .submitit/<id>/<id>_result.pkl."""
    import pickle

    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    from embedgrid.grid.hydra_callbacks import RedactSecrets

    secret = "hf_JobReturnToken0123456789ABCD"
    ret = JobReturn(overrides=[f"+hf_token={secret}", "model=tiny"], cfg=OmegaConf.create({"hf_token": secret}),
                    hydra_cfg=OmegaConf.create({"hydra": {"overrides": {"task": [f"+hf_token={secret}"]}}}),
                    status=JobStatus.COMPLETED, _return_value={"status": "failed", "error": f"bad {secret}"})
    RedactSecrets().on_job_end(config=OmegaConf.create({}), job_return=ret)
    assert secret.encode() not in pickle.dumps(ret)
    assert ret.overrides == ["+hf_token=<redacted>", "model=tiny"] and ret.return_value["status"] == "failed"


def test_hydra_files_are_rewritten_redacted_at_job_start(tmp_path, record_factory):
    """What Hydra writes before on_job_start: the task config, its own config, the override list."""
    from omegaconf import OmegaConf

    from embedgrid.grid.hydra_callbacks import RedactSecrets

    secret = "hf_HydraFileToken0123456789ABCD"
    hydra = {"runtime": {"output_dir": str(tmp_path)}, "output_subdir": ".hydra",
             "overrides": {"task": [f"+hf_token={secret}", "model=tiny"]},
             "job": {"override_dirname": f"+hf_token={secret},model=tiny"}}
    folder = tmp_path / ".hydra"
    folder.mkdir()
    OmegaConf.save(OmegaConf.create({"hf_token": secret, "run": {"dir": "${hydra:runtime.output_dir}"}}),
                   folder / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": hydra}), folder / "hydra.yaml")
    OmegaConf.save(OmegaConf.create(hydra["overrides"]["task"]), folder / "overrides.yaml")
    RedactSecrets().on_job_start(config=OmegaConf.create({"hydra": hydra}))
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        assert secret not in (folder / name).read_text(), name
    assert OmegaConf.to_container(OmegaConf.load(folder / "overrides.yaml")) == ["+hf_token=<redacted>", "model=tiny"]
    assert "${hydra:runtime.output_dir}" in (folder / "config.yaml").read_text()  # interpolations kept as written
