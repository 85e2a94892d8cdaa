"""The GitHub Actions workflows: triggers, secret handling and the commands they run."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.timeout(30)

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
IMAGE_VARS = {
    "SYNK8S_GPU_IMAGE": "${{ vars.SYNK8S_GPU_IMAGE }}",
    "SYNK8S_CPU_IMAGE": "${{ vars.SYNK8S_CPU_IMAGE }}",
}
DIGEST = "@sha256:" + "0" * 64
S3_SETTINGS = {
    "SYNK8S_S3_ENDPOINT": "https://minio.example.com",
    "MINIO_ACCESS_KEY": "reader",
    "MINIO_SECRET_KEY": "secret",
}
# study job -> (the study's submit command up to --store, its run name's study)
STUDIES = {
    "zeroshot-cifar100": ("synk8s submit zeroshot --dataset cifar100 --profile paper", "zeroshot"),
    "fewshot-eurosat": ("synk8s submit fewshot --dataset eurosat --shots 16 --profile paper", "fewshot"),
    "pretrain-cifar100": (
        "synk8s submit pretrain --label-space cifar100 --method supervised --transfer cifar100 --profile paper",
        "pretrain",
    ),
}


def submit(command, study):
    """The full submit line of a study job: the cluster images, the KFP host, a run name per study, --wait."""
    return (
        f"{command} --store s3://synk8s/reproducibility "
        '--set "cluster.image=$SYNK8S_GPU_IMAGE" --set "cluster.cpu_image=$SYNK8S_CPU_IMAGE" --host "$KFP_HOST" '
        f'--experiment reproducibility --run-name "repro-{study}-${{GITHUB_REF_NAME}}-${{GITHUB_RUN_ID}}" --wait'
    )


def load(name):
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    # PyYAML reads the bare key `on` as the boolean True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def steps(workflow):
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _runs(workflow):
    return [" ".join(step["run"].split()) for step in steps(workflow) if "run" in step]


@pytest.mark.parametrize("name", ["ci.yml", "reproduce.yml"])
def test_secrets_appear_only_as_expressions(name):
    # Secrets reach steps only as environment variables (`NAME: ${{ secrets.NAME }}`), never
    # spliced into a script or a condition.
    lines = [line for line in (WORKFLOWS / name).read_text().splitlines() if "secrets." in line]
    for line in lines:
        assert re.fullmatch(r"\s*[A-Z_]+: \$\{\{ secrets\.[A-Z_]+ \}\}", line), f"{name}: {line.strip()}"
    for job in load(name)["jobs"].values():
        conditions = [job.get("if", "")] + [step.get("if", "") for step in job.get("steps", [])]
        assert not any("secrets." in condition for condition in conditions)  # not allowed in `if:`


@pytest.mark.parametrize("name", ["ci.yml", "reproduce.yml"])
def test_jobs_read_secrets_only_in_a_github_environment(name):
    # An environment's protection rules (branches, reviewers) then guard every job that holds a secret.
    for job_name, job in load(name)["jobs"].items():
        if "secrets." in yaml.safe_dump(job):
            assert job.get("environment") == "reproduce", f"{name}: job {job_name}"


@pytest.mark.parametrize("name", ["ci.yml", "reproduce.yml"])
def test_actions_are_pinned_by_commit_and_checkout_keeps_no_credentials(name):
    lines = [line.strip() for line in (WORKFLOWS / name).read_text().splitlines() if "uses:" in line]
    assert lines
    for line in lines:
        # `owner/action@<40 hex digits>  # vX.Y.Z`: a tag can be moved, a commit cannot.
        assert re.fullmatch(r"- uses: [\w.-]+/[\w.-]+@[0-9a-f]{40}  # v\d+\.\d+\.\d+", line), f"{name}: {line}"
    for step in steps(load(name)):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


def test_ci_runs_the_suite_on_push_and_pull_request():
    workflow = load("ci.yml")
    assert set(workflow["on"]) == {"push", "pull_request"}
    uses = [step.get("uses", "") for step in steps(workflow)]
    assert any(u.startswith("actions/checkout@") for u in uses)
    (setup,) = [s for s in steps(workflow) if s.get("uses", "").startswith("actions/setup-python@")]
    assert setup["with"]["python-version"] == "3.11"
    assert _runs(workflow) == ["bash .ci/run"]
    assert workflow["permissions"] == {"contents": "read"}


def test_reproduce_runs_weekly_and_on_version_tags():
    triggers = load("reproduce.yml")["on"]
    (schedule,) = triggers["schedule"]
    _minute, _hour, day, month, weekday = schedule["cron"].split()
    assert (day, month) == ("*", "*") and weekday.isdigit()  # once a week
    assert triggers["push"]["tags"] == ["v*"]


def test_reproduce_gate_reads_the_secret_and_image_variables():
    workflow = load("reproduce.yml")
    gate = workflow["jobs"]["gate"]
    (step,) = gate["steps"]
    assert step["env"] == {
        "KFP_HOST": "${{ secrets.KFP_HOST }}",
        **IMAGE_VARS,
        "SYNK8S_S3_ENDPOINT": "${{ vars.SYNK8S_S3_ENDPOINT }}",
        "MINIO_ACCESS_KEY": "${{ secrets.MINIO_ACCESS_KEY }}",
        "MINIO_SECRET_KEY": "${{ secrets.MINIO_SECRET_KEY }}",
    }
    for name in STUDIES:
        run_job = workflow["jobs"][name]
        assert run_job["needs"] == "gate"
        assert run_job["if"] == "needs.gate.outputs.enabled == 'true'"
        assert run_job["env"] == {
            "KFP_HOST": "${{ secrets.KFP_HOST }}",
            "KFP_TOKEN": "${{ secrets.KFP_TOKEN }}",
            **IMAGE_VARS,
        }


def _run_gate(tmp_path, **env):
    """Run the gate step's script with bash; returns (exit code, stdout, what it wrote to GITHUB_OUTPUT)."""
    (step,) = load("reproduce.yml")["jobs"]["gate"]["steps"]
    output = tmp_path / "github_output"
    output.write_text("")
    variables = {"PATH": "/usr/bin:/bin", "GITHUB_OUTPUT": str(output), **env}
    command = ["bash", "-e", "-c", step["run"]]
    result = subprocess.run(command, env=variables, capture_output=True, text=True, check=False)
    return result.returncode, result.stdout, output.read_text()


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "KFP_HOST"),
        ({"KFP_HOST": "https://kfp.example.com"}, "SYNK8S_GPU_IMAGE"),
        ({"KFP_HOST": "https://kfp.example.com", "SYNK8S_GPU_IMAGE": f"gpu{DIGEST}"}, "SYNK8S_CPU_IMAGE"),
        (
            {"KFP_HOST": "https://kfp.example.com", "SYNK8S_GPU_IMAGE": f"r/gpu{DIGEST}",
             "SYNK8S_CPU_IMAGE": f"r/cpu{DIGEST}", **{**S3_SETTINGS, "MINIO_SECRET_KEY": ""}},
            "MINIO_SECRET_KEY",
        ),
    ],
)
def test_reproduce_gate_skips_with_a_notice(tmp_path, env, missing):
    code, stdout, output = _run_gate(tmp_path, **env)
    assert code == 0
    assert stdout.startswith("::notice title=reproduce skipped::") and missing in stdout
    assert output == "enabled=false\n"


def test_reproduce_gate_enables_the_run_with_digest_pinned_images(tmp_path):
    env = {
        "KFP_HOST": "https://kfp.example.com",
        "SYNK8S_GPU_IMAGE": f"r/gpu{DIGEST}",
        "SYNK8S_CPU_IMAGE": f"r/cpu{DIGEST}",
        **S3_SETTINGS,
    }
    assert _run_gate(tmp_path, **env) == (0, "", "enabled=true\n")


def test_reproduce_gate_fails_on_an_image_tag(tmp_path):
    env = {
        "KFP_HOST": "https://kfp.example.com",
        "SYNK8S_GPU_IMAGE": f"r/gpu{DIGEST}",
        "SYNK8S_CPU_IMAGE": "r/cpu:0.1",
        **S3_SETTINGS,
    }
    code, stdout, output = _run_gate(tmp_path, **env)
    assert code == 1
    assert "::error title=reproduce::r/cpu:0.1 is not pinned by digest" in stdout
    assert output == ""


def test_reproduce_submits_the_three_studies_with_the_paper_profile():
    workflow = load("reproduce.yml")
    for name, (command, study) in STUDIES.items():
        runs = _runs({"jobs": {name: workflow["jobs"][name]}})
        assert any("python -m pip install ." in run for run in runs)
        assert submit(command, study) in runs


def test_reproduce_checks_the_runs_against_the_paper_after_every_study():
    workflow = load("reproduce.yml")
    check = workflow["jobs"]["check"]
    assert check["needs"] == ["gate", *STUDIES]
    # after the studies whatever their outcome (a study that failed shows as missing cells), not when cancelled
    assert check["if"] == "${{ !cancelled() && needs.gate.outputs.enabled == 'true' }}"
    assert check["env"] == {
        "SYNK8S_S3_ENDPOINT": "${{ vars.SYNK8S_S3_ENDPOINT }}",
        "MINIO_ACCESS_KEY": "${{ secrets.MINIO_ACCESS_KEY }}",
        "MINIO_SECRET_KEY": "${{ secrets.MINIO_SECRET_KEY }}",
    }
    runs = _runs({"jobs": {"check": check}})
    assert runs[-1] == "synk8s results s3://synk8s/reproducibility --check --expect paper"
