"""The built wheel works on its own: `python -m build` makes an sdist and a wheel holding the
default checkpoint, the pretraining configs, the evaluation manifests and the demo's stored
reference scores; the wheel installs into a fresh virtual environment (torch pinned as
scripts/setup_env.sh pins it) where `hear-validator hear_slicer` passes and the default
model embeds a sound exactly as the source tree does, from a folder outside the repository
so its sources cannot be imported.

The fresh environment installs the wheel and its requirements with pip, from this machine's
local wheel folder and index as every pip call of the set-up does, except the two giants:
torch and TensorFlow (about 2 GB, over 2 minutes of unpacking on a busy 2-core machine)
are not copied but seen through a ``.pth`` file naming a folder of links to exactly their
own files in the project's venv (same build, ``torch.__version__`` pinned). pip treats them
as installed and still installs their dependencies fresh; so the test checks the wheel's
own contents and requirements, not torch's or TensorFlow's installers. Measured on the
shared 2-core machine: 1 min 40 s (build 5 s, pip 20 s, validator and embedding 27 s), 2 min
46 s at load average 11; a complete install of torch and TensorFlow too took 4 min 24 s.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DATA = ["hear_slicer/assets/default.pt", *sorted(str(p.relative_to(REPO)) for p in (
    *REPO.glob("pretrain/configs/*.yaml"), *REPO.glob("eval_suites/manifests/*.yaml"),
    *(f for f in REPO.glob("eval_suites/references/demo_scores/**/*") if f.is_file())))]

# Run inside the fresh environment: where the packages come from, their data files, and one
# embedding of a fixed sound by the default model (saved for the test to compare).
CHECK_INSTALLED = '''
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch

import eval_suites, hear_slicer, pretrain
from eval_suites.core.manifest import load_manifest
from pretrain.config import load_config

site = Path(sys.argv[1]).resolve()
for module in (hear_slicer, pretrain, eval_suites):
    assert Path(module.__file__).resolve().is_relative_to(site), f"{module.__name__} from {module.__file__}"
load_config(files("pretrain") / "configs" / "slicer.yaml")
load_manifest(files("eval_suites") / "manifests" / "demo.yaml")
model = hear_slicer.load_model()
assert not model.is_random_init and Path(model.checkpoint_path).resolve().is_relative_to(site), model.checkpoint_path
t = torch.arange(16000) / 16000.0
audio = torch.stack([0.3 * torch.sin(2 * torch.pi * 440.0 * t), 0.2 * torch.sin(2 * torch.pi * 97.0 * t)])
np.save(sys.argv[2], hear_slicer.get_scene_embeddings(audio, model).numpy())
print(f"torch {torch.__version__}")
'''


def _requirement(path: Path, name: str) -> str:
    """The line of requirements file ``path`` that pins ``name`` (comments stripped)."""
    for line in path.read_text().splitlines():
        spec = line.split("#")[0].strip()
        if spec.lower().startswith(name.lower()):
            return spec
    raise AssertionError(f"{path} pins no {name}")


def _tracked_copy(dest: Path) -> Path:
    """The repository's tracked files (what a fresh clone holds) copied to ``dest``."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in names.decode().split("\0"):
        if name and (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def _link_distribution(name: str, folder: Path) -> None:
    """Links in ``folder`` to the top-level files of installed distribution ``name`` (its
    packages and dist-info; not its scripts outside site-packages)."""
    dist = importlib.metadata.distribution(name)
    for top in sorted({Path(f).parts[0] for f in dist.files} - {".."}):
        (folder / top).symlink_to(Path(dist.locate_file(top)).resolve())


def _run(cmd: list, cwd: Path, env: dict, timeout: int = 600) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def test_built_wheel_installs_into_a_fresh_venv_and_passes_hear_validator(tmp_path):
    try:
        import build  # noqa: F401  (the dev extra; scripts/setup_env.sh installs it)
    except ImportError:
        pytest.fail("the `build` package is missing: run scripts/setup_env.sh (it installs the dev extras)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    outside = tmp_path / "elsewhere"  # the cwd of every command: the repository is not importable
    outside.mkdir()
    seconds = {}

    # 1. sdist and wheel, from a copy of the tracked files (the build writes build/ and egg-info there)
    t0 = time.time()
    src = _tracked_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src], outside, env)
    wheel, = dist.glob("hear_slicer-*.whl")
    sdist, = dist.glob("hear_slicer-*.tar.gz")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert z.read("hear_slicer/assets/default.pt") == (REPO / "hear_slicer/assets/default.pt").read_bytes()
    assert [d for d in DATA if d not in names] == []
    assert len(DATA) >= 3 and not any(n.startswith(("tests/", "studies/", "benchmarks/")) for n in names)
    with tarfile.open(sdist) as tar:
        in_sdist = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    assert [d for d in DATA if d not in in_sdist] == []  # a wheel built from the sdist has them too
    seconds["build"] = time.time() - t0

    # 2. a fresh venv that sees this venv's torch and TensorFlow builds (links, see above);
    #    torch pinned as scripts/setup_env.sh pins it: every pip call constrained to the
    #    running build and to requirements/constraints.txt
    t0 = time.time()
    venv = tmp_path / "venv"
    try:
        _run([sys.executable, "-m", "venv", "--without-pip", venv], outside, env)
        py = venv / "bin" / "python"
        site = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], outside, env).strip()
        giants = tmp_path / "linked"
        giants.mkdir()
        for name in ("torch", "tensorflow-cpu"):
            _link_distribution(name, giants)
        (Path(site) / "linked_giants.pth").write_text(f"{giants}\n")
        constraints = tmp_path / "constraints.txt"
        pins = [line for line in (REPO / "requirements/constraints.txt").read_text().splitlines()
                if not line.startswith("torch==")]
        constraints.write_text("\n".join([f"torch=={torch.__version__}", *pins]) + "\n")
        pip = [sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-compile",
               "--disable-pip-version-check", "-c", constraints]
        tensorflow = _requirement(REPO / "requirements/hear.txt", "tensorflow-cpu")
        _run(pip + [f"torch=={torch.__version__}", tensorflow, wheel], outside, env)  # their dependencies
        _run(pip + ["--no-deps", "--ignore-requires-python",
                    _requirement(REPO / "requirements/hear-nodeps.txt", "hearvalidator")], outside, env)
        listed = _run([sys.executable, "-m", "pip", "--python", py, "list", "--format=freeze"], outside, env)
        assert f"torch=={torch.__version__}" in listed and "hear-slicer==" in listed
        seconds["install"] = time.time() - t0

        # 3. the validator and one embedding, run from outside the repository
        t0 = time.time()
        assert "Looks good!" in _run([venv / "bin" / "hear-validator", "hear_slicer"], outside, env)
        (outside / "check.py").write_text(CHECK_INSTALLED)
        installed = tmp_path / "installed.npy"
        out = _run([py, "check.py", site, installed], outside, env)
        assert f"torch {torch.__version__}" in out
        seconds["validator+embedding"] = time.time() - t0
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # about 400 MB

    # 4. the installed package embeds as the source tree does
    import hear_slicer
    model = hear_slicer.load_model()
    t = torch.arange(16000) / 16000.0
    audio = torch.stack([0.3 * torch.sin(2 * torch.pi * 440.0 * t), 0.2 * torch.sin(2 * torch.pi * 97.0 * t)])
    here = hear_slicer.get_scene_embeddings(audio, model).numpy()
    np.testing.assert_allclose(np.load(installed), here, rtol=1e-5, atol=1e-5)
    print("wheel test seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
