"""Package the project for spark-submit on a cluster (`make dist`):

    python -m musicmap.dist [--out dist]

writes
    dist/musicmap-dist.zip   the --py-files archive: the package musicmap/ as it installs, with
                             conf/ inside it as musicmap/conf/
                             (default.yaml, which musicmap.config reads through
                             importlib.resources, so it works from inside the zip)
    dist/build_graph.py      the entry script spark-submit runs (a copy of spark_jobs/build_graph.py)

and prints the spark-submit command. The driver and every executor import the project from the
zip; only the third-party packages (pyarrow, numpy, pandas, fsspec, s3fs, pyyaml, tqdm) must be
installed in the cluster's Python (see infra/docker and infra/README.md). The archive is
reproducible: same sources, same bytes (sorted entries, fixed timestamps).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]           # the checkout
# folder in the archive -> folder in the checkout (pyproject.toml's package-dir, the same mapping)
PACKAGES = {"musicmap": "musicmap", "musicmap/conf": "conf"}
DATA_SUFFIXES = (".py", ".yaml")                     # code, and the configs conf/ ships
ZIP_NAME = "musicmap-dist.zip"
ENTRY = "build_graph.py"


def package_files(src: Path = SRC) -> dict[str, Path]:
    """The files that go into the archive: name in the archive -> file, sorted by name."""
    out = {}
    for pkg, folder in PACKAGES.items():
        if not (src / folder / "__init__.py").is_file():
            raise FileNotFoundError(f"{src / folder}: package missing (run from the project checkout)")
        out.update({f"{pkg}/{p.relative_to(src / folder).as_posix()}": p for p in (src / folder).rglob("*")
                    if p.is_file() and p.suffix in DATA_SUFFIXES and "__pycache__" not in p.parts})
    return dict(sorted(out.items()))


def build(out_dir: str | Path = "dist", src: Path = SRC) -> Path:
    """Write <out_dir>/musicmap-dist.zip and <out_dir>/build_graph.py; returns the zip's path."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    archive = out / ZIP_NAME
    tmp = archive.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, path in package_files(src).items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, path.read_bytes())
    tmp.replace(archive)
    shutil.copyfile(src / "spark_jobs" / ENTRY, out / ENTRY)
    return archive


def submit_command(archive: Path, master: str = "local[*]", root: str = "ROOT_URI") -> str:
    return (f"spark-submit --master {master} --py-files {archive} {archive.parent / ENTRY} "
            f"--root {root} [--config FILE] [--set key=value ...]")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m musicmap.dist", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="dist", help="output folder (default: dist)")
    args = p.parse_args(argv)
    archive = build(args.out)
    with zipfile.ZipFile(archive) as z:
        n = len(z.namelist())
    try:
        shown = archive.relative_to(Path.cwd())
    except ValueError:
        shown = archive
    print(f"wrote {shown} ({n} files, {archive.stat().st_size:,} bytes) and {shown.parent / ENTRY}")
    print("run build_graph with:")
    print("  " + submit_command(shown))
    print("on a cluster, upload both files (e.g. aws s3 cp ... s3://BUCKET/code/) and pass their "
          "URIs; see infra/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
