"""infra/: the cloud deployment stays valid.

- Terraform (infra/terraform): `fmt -check`, `init -backend=false` against a local provider mirror
  (offline) and `validate`, in a copy of the folder so nothing is left in the tree. Skipped when
  terraform or the hashicorp/aws provider mirror is not on this machine.
- Kubernetes manifests (infra/k8s): the fields the jobs depend on (torchrun layout, GPUs, storage
  root, IRSA service account), and render.sh filling every placeholder without touching AWS_REGION.
- The image (infra/docker/Dockerfile, /.dockerignore): Java, CUDA torch, the project, a lean context.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import build_wheel

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
TERRAFORM = INFRA / "terraform"

# Where an offline copy of the provider may live: a folder holding registry.terraform.io/hashicorp/aws.
PLUGIN_ENV = "MUSICMAP_TF_PLUGIN_DIR"
PLUGIN_ROOTS = ["/usr/share/terraform", "/usr/local/share", "/root/.terraform.d", "/opt",
                str(Path.home() / ".terraform.d")]


# ---------------------------------------------------------------------------------------------
# Terraform
# ---------------------------------------------------------------------------------------------

def _find_plugin_dir() -> Path | None:
    """The parent of a registry.terraform.io folder that holds hashicorp/aws (what
    `terraform init -plugin-dir` wants): $MUSICMAP_TF_PLUGIN_DIR if set, else a shallow search."""
    if os.environ.get(PLUGIN_ENV):
        return Path(os.environ[PLUGIN_ENV])
    for root in PLUGIN_ROOTS:
        if not os.path.isdir(root):
            continue
        base_depth = root.rstrip("/").count("/")
        for dirpath, dirnames, _ in os.walk(root):
            if "registry.terraform.io" in dirnames and \
                    os.path.isdir(os.path.join(dirpath, "registry.terraform.io", "hashicorp", "aws")):
                return Path(dirpath)
            if dirpath.count("/") - base_depth >= 3:  # stay shallow: these roots can be large
                dirnames[:] = []
    return None


def _tf(args: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
    return subprocess.run(["terraform", *args, "-no-color"], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


def _assert_ok(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"


def test_terraform_fmt_init_validate(tmp_path):
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not on PATH: install Terraform >= 1.5 to check infra/terraform")
    plugin_dir = _find_plugin_dir()
    if plugin_dir is None:
        pytest.skip("no offline hashicorp/aws provider found (a folder containing "
                    f"registry.terraform.io/hashicorp/aws under {', '.join(PLUGIN_ROOTS)}); "
                    f"set {PLUGIN_ENV} to the parent of registry.terraform.io")

    work = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, work, ignore=shutil.ignore_patterns(
        ".terraform", ".terraform.lock.hcl", "*.tfstate*"))

    _assert_ok(_tf(["fmt", "-check", "-recursive", "-diff"], work), "terraform fmt -check")
    _assert_ok(_tf(["init", "-backend=false", f"-plugin-dir={plugin_dir}", "-input=false"], work),
               "terraform init")
    _assert_ok(_tf(["validate"], work), "terraform validate")


def test_terraform_uses_only_the_aws_provider():
    text = "\n".join(p.read_text() for p in TERRAFORM.glob("*.tf"))
    sources = set(re.findall(r'source\s*=\s*"([^"]+)"', text))
    assert sources == {"hashicorp/aws"}, f"only hashicorp/aws is allowed, found {sources}"
    assert not re.search(r'^\s*module\s+"', text, re.M), "no modules: plain resources only"
    for name in ["region", "name", "bucket_name", "root_prefix", "gpu_instance_type",
                 "gpus_per_node", "gpu_node_count", "emr_release_label"]:
        assert f'variable "{name}"' in text, f"missing variable {name}"
    for name in ["bucket_name", "root_uri", "emr_application_id", "eks_cluster_name",
                 "eks_cluster_endpoint", "spark_job_role_arn", "trainer_role_arn"]:
        assert f'output "{name}"' in text, f"missing output {name}"


# ---------------------------------------------------------------------------------------------
# Kubernetes manifests
# ---------------------------------------------------------------------------------------------

def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _one(name: str, kind: str) -> dict:
    found = [d for d in _docs(name) if d["kind"] == kind]
    assert len(found) == 1, f"{name}: expected one {kind}, found {len(found)}"
    return found[0]


def _flag(cmd: list[str], name: str) -> str:
    """Value of `--name=value` or `--name value` in an argv list."""
    for i, arg in enumerate(cmd):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name:
            return cmd[i + 1]
    raise AssertionError(f"{name} not in {cmd}")


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _service_accounts() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in _docs("serviceaccount.yaml")
            if d["kind"] == "ServiceAccount"}


IMAGE = "ACCOUNT.dkr.ecr.REGION.amazonaws.com/musicmap:latest"


def test_pytorchjob_runs_torchrun_across_gpu_nodes():
    job = _one("train-pytorchjob.yaml", "PyTorchJob")
    assert job["apiVersion"] == "kubeflow.org/v1"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"}
    assert replicas["Master"]["replicas"] == 1
    nodes = sum(r["replicas"] for r in replicas.values())
    sas = _service_accounts()

    for role, spec in replicas.items():
        pod = spec["template"]["spec"]
        (c,) = pod["containers"]
        assert c["name"] == "pytorch", "the training operator needs the container named 'pytorch'"
        assert c["image"] == IMAGE
        cmd = c["command"] + c.get("args", [])
        assert cmd[0] == "torchrun"
        gpus = int(c["resources"]["limits"]["nvidia.com/gpu"])
        assert gpus >= 1
        assert int(_flag(cmd, "--nproc_per_node")) == gpus, f"{role}: one process per GPU"
        assert _flag(cmd, "--nnodes") == "$(NNODES)"
        assert int(_env(c)["NNODES"]) == nodes, f"{role}: NNODES must equal Master + Worker replicas"
        assert _flag(cmd, "--rdzv_backend") == "c10d"
        assert _flag(cmd, "--rdzv_endpoint") == f"{job['metadata']['name']}-master-0:29400"
        assert "train/main.py" in cmd
        assert _flag(cmd, "--root").startswith("s3://")
        assert _flag(cmd, "--root") == "s3://BUCKET/mm"
        assert _env(c)["AWS_REGION"]
        assert pod["serviceAccountName"] in sas
        assert any(t["key"] == "nvidia.com/gpu" for t in pod.get("tolerations", []))

    # Master and Worker run the same thing.
    m, w = (replicas[r]["template"]["spec"]["containers"][0] for r in ("Master", "Worker"))
    assert m["command"] == w["command"] and m["resources"] == w["resources"]


def test_recommend_job_runs_on_one_gpu():
    job = _one("recommend-job.yaml", "Job")
    assert job["apiVersion"] == "batch/v1"
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == IMAGE
    assert int(c["resources"]["limits"]["nvidia.com/gpu"]) == 1
    script = " ".join(c.get("command", []) + c.get("args", []))
    lines = [shlex.split(line) for line in script.splitlines() if line.strip().startswith("musicmap")]
    names = [cmd[1] for cmd in lines]
    # The ranker is refitted for the model just trained (a stale one is not served) before recommend.
    assert names == ["fit-ranker", "recommend", "evaluate"], names
    recommend = lines[1]
    assert {_flag(cmd, "--root") for cmd in lines} == {"s3://BUCKET/mm"}
    assert _flag(recommend, "--playlists") == "all"
    assert "recommend.device=cuda" in recommend
    assert pod["serviceAccountName"] in _service_accounts()


def test_service_accounts_carry_irsa_roles():
    sas = _service_accounts()
    train_sa = _one("train-pytorchjob.yaml", "PyTorchJob")["spec"]["pytorchReplicaSpecs"][
        "Master"]["template"]["spec"]["serviceAccountName"]
    assert train_sa == _one("recommend-job.yaml", "Job")["spec"]["template"]["spec"][
        "serviceAccountName"]
    for name, sa in sas.items():
        assert sa["apiVersion"] == "v1"
        assert sa["metadata"]["namespace"] == "musicmap"
        arn = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert re.fullmatch(r"arn:aws:iam::ACCOUNT:role/[\w+=,.@-]+", arn), arn
    assert sas[train_sa]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
        "role/musicmap-trainer")

    # The names Terraform's IRSA trust policies expect.
    tf = (TERRAFORM / "variables.tf").read_text()
    assert f'default     = "{train_sa}"' in tf
    assert 'default     = "musicmap-spark"' in tf and "musicmap-spark" in sas


def test_render_fills_every_placeholder(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("bash is not available")
    env = dict(os.environ, BUCKET="acme-musicmap-data", ACCOUNT="123456789012",
               REGION="eu-west-1", TAG="v1")
    out = subprocess.run(["bash", str(K8S / "render.sh")], env=env, text=True,
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert {d["kind"] for d in docs} >= {"PyTorchJob", "Job", "ServiceAccount", "Namespace"}
    body = "\n".join(l for l in out.stdout.splitlines() if not l.lstrip().startswith("#"))
    assert not re.search(r"\b(BUCKET|ACCOUNT)\b|\bREGION\b", body), "placeholder left"
    assert "name: AWS_REGION" in body and "name: AWS_us" not in body
    assert "s3://acme-musicmap-data/mm" in body
    assert "123456789012.dkr.ecr.eu-west-1.amazonaws.com/musicmap:v1" in body
    assert "arn:aws:iam::123456789012:role/musicmap-trainer" in body

    bad = subprocess.run(["bash", str(K8S / "render.sh")], env=dict(env, ACCOUNT="12#4"),
                         text=True, capture_output=True, timeout=30)
    assert bad.returncode != 0 and "ACCOUNT" in bad.stderr


def test_spark_submit_example_targets_kubernetes():
    text = (K8S / "spark-submit.sh").read_text()
    assert "--master \"k8s://" in text
    assert "spark.kubernetes.container.image=" in text
    assert "serviceAccountName=musicmap-spark" in text
    assert "spark_jobs/build_graph.py" in text
    subprocess.run(["bash", "-n", str(K8S / "spark-submit.sh")], check=True, timeout=30)


# ---------------------------------------------------------------------------------------------
# Container image
# ---------------------------------------------------------------------------------------------

def test_dockerfile_installs_java_cuda_torch_and_the_project():
    text = (INFRA / "docker" / "Dockerfile").read_text()
    assert re.search(r"openjdk-17-jre-headless", text), "Java 17 for the Spark JVM"
    assert re.search(r"ARG TORCH_VERSION=\d+\.\d+\.\d+", text), "torch pinned"
    assert "download.pytorch.org/whl/cu1" in text, "CUDA torch wheels"
    assert re.search(r"pip install (-e )?/app", text)
    assert "WORKDIR /app" in text
    for pkg in ["musicmap", "spark_jobs", "train", "conf"]:
        assert re.search(rf"^COPY {pkg} ", text, re.M), f"{pkg}/ copied into the image"
    assert "PYSPARK_PYTHON=python3" in text
    # torchrun restarts on several nodes meet in a fresh store (musicmap.distributed.FRESH_STORE_ENV)
    from musicmap.distributed import FRESH_STORE_ENV
    for k, v in FRESH_STORE_ENV.items():
        assert f"{k}={v}" in text
    # Every COPY source exists (except README.md, which the project root must provide).
    for line in re.findall(r"^COPY (?!--)(.+)$", text, re.M):
        for src in line.split()[:-1]:
            assert src == "README.md" or (ROOT / src).exists(), f"COPY source {src} is missing"


def test_dockerignore_keeps_the_context_lean():
    lines = {l.strip().rstrip("/") for l in (ROOT / ".dockerignore").read_text().splitlines()
             if l.strip() and not l.startswith("#")}
    for must in [".venv", "demo-data", ".git"]:
        assert must in lines, f".dockerignore must exclude {must}"
    for keep in ["musicmap", "train", "spark_jobs", "conf", "pyproject.toml", "infra", "README.md"]:
        assert keep not in lines, f".dockerignore must not exclude {keep}"


def test_the_installed_package_has_one_top_level_name(tmp_path):
    """The wheel installs `musicmap` only (conf/ goes in as musicmap.conf), with the files its
    modules read (default.yaml, the map page)."""
    import zipfile
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"musicmap"}
    for f in ["musicmap/train/main.py", "musicmap/spark_jobs/build_graph.py", "musicmap/conf/default.yaml",
              "musicmap/tools/map_page.html"]:
        assert f in names
