"""Hostile inputs, one test per class: what each feeds and the error (or skip) it expects.

Classes (issue 15): config values out of range; run folders holding another run; resume
with changes that would mix state; bad audio files (out of range, non-finite log-mel,
names that are not UTF-8); tampered label pickles in a shared embedding cache; disk full
and unwritable outputs (checkpoints, embedding cache, results, report); corrupt
result.json; plugin options out of range; audio giving non-finite embeddings; checkpoints
with non-finite weights; bad YAML. Runs are tiny (synthetic noise and tones, 2-3 steps).
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import resource
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import hear_slicer
from eval_suites.__main__ import main as eval_main
from eval_suites.synthetic.demo_tasks import build_keyword_task
from eval_suites.core.embeddings import UnsafePickleError, ensure_embeddings, load_hear_model, read_split
from eval_suites.core.manifest import ModelSpec, load_manifest
from eval_suites.core.protocols.heareval import _link_embeddings
from eval_suites.core.results import CorruptResultWarning, cell_dir, collect_results
from eval_suites.core.runner import run_manifest
from hear_slicer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pretrain.__main__ import main as pretrain_main
from pretrain.config import ConfigError, load_config
from pretrain.data import AudioCrops, AudioFileError, decode_audio, find_audio_files, scan_files
from pretrain.stats import compute_stats

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SR = 16000
TINY = ["encoder.d=32", "encoder.channels=4", "data.batch_size=4", "data.num_workers=0", "data.crop_seconds=0.5",
        "objective.params.queue_size=16", "objective.params.n_clusters=4", "objective.params.instance_dim=8",
        "augment.mixup.memory=8", "augment.kmix.memory=8", "augment.kmix.r=2", "augment.kmix.k=2",
        "stats.min_files=6", "optim.warmup_steps=1", "run.log_every=1", "run.progress=false"]
HUGE = "huge.wav"  # float WAV with samples around 1e20
ODD_GOOD = os.fsdecode(b"good_\xff\xfe.wav")  # a readable file whose name is not UTF-8
ODD_BAD = os.fsdecode(b"bad_\xe9t\xe9.wav")  # an unreadable one, also not UTF-8


def _tone(i: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(i)
    return (0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    """8 good clips, plus one huge float WAV and two files named with invalid UTF-8 bytes."""
    root = tmp_path_factory.mktemp("hostile_audio")
    for i in range(8):
        sf.write(root / f"clip{i}.wav", _tone(i), SR)
    sf.write(root / HUGE, _tone(9) * 1e20, SR, subtype="FLOAT")
    sf.write(root / "odd.wav", _tone(10), SR)
    os.rename(root / "odd.wav", root / ODD_GOOD)
    (root / ODD_BAD).write_bytes(b"RIFF not really a wav")
    return root


def _argv(audio: Path, out: Path, *extra: str) -> list[str]:
    return ["--config", str(REPO / "pretrain/configs/slicer.yaml"), "--out", str(out), "--set", *TINY,
            f"data.path={audio}", *extra]


@pytest.fixture(scope="module")
def run_dir(audio, tmp_path_factory) -> Path:
    """A finished 2-step run (checkpoints at steps 1 and 2) on the hostile corpus."""
    out = tmp_path_factory.mktemp("hostile_run") / "run"
    assert pretrain_main(_argv(audio, out, "run.steps=2", "run.checkpoint_every=1")) == 0
    return out


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Writes past `nbytes` fail with EFBIG (OSError), as on a full disk (RLIMIT_FSIZE, SIGXFSZ ignored)."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


# ----------------------------------------------------------------------------- config and command line
@pytest.mark.parametrize("override, key", [
    ("run.keep_last=-1", "run.keep_last"), ("run.keep_last=0", "run.keep_last"), ("run.steps=0", "run.steps"),
    ("run.checkpoint_every=-5", "run.checkpoint_every"), ("run.log_every=0", "run.log_every"),
    ("run.seed=-1", "run.seed"), ("run.device=gpu0", "run.device"), ("run.out=''", "run.out"),
    ("data.batch_size=0", "data.batch_size"), ("data.batch_size=1", "data.batch_size"),
    ("data.crop_seconds=-1", "data.crop_seconds"), ("data.crop_seconds=1e9", "data.crop_seconds"),
    ("data.num_workers=-1", "data.num_workers"), ("data.silence_peak=2", "data.silence_peak"),
    ("data.extensions=[]", "data.extensions"), ("data.max_peak=0", "data.max_peak"),
    ("stats.fraction=0", "stats.fraction"), ("stats.min_files=0", "stats.min_files"),
    ("stats.kmeans_iters=0", "stats.kmeans_iters"), ("optim.lr=0", "optim.lr"), ("optim.lr=-1e-3", "optim.lr"),
    ("optim.lr=.nan", "optim.lr"), ("optim.betas=[0.9,1.5]", "optim.betas"), ("optim.momentum=1", "optim.momentum"),
    ("optim.warmup_steps=-1", "optim.warmup_steps"), ("optim.min_lr_ratio=2", "optim.min_lr_ratio"),
    ("optim.grad_clip=-1", "optim.grad_clip"), ("optim.weight_decay=-0.1", "optim.weight_decay"),
    ("frontend.hop_length=0", "frontend.hop_length"), ("frontend.sample_rate=-16000", "frontend.sample_rate"),
    ("encoder.d=0", "encoder.d"), ("encoder.dropout=1.0", "encoder.dropout"),
    ("augment.mixup.alpha=3", "augment.mixup.alpha"), ("augment.mixup.memory=0", "augment.mixup.memory"),
    ("augment.rrc.virtual_crop_scale=[0.5,1.0]", "augment.rrc.virtual_crop_scale"), ("augment.rrc.freq_scale=[0,1]", "augment.rrc.freq_scale"),
    ("augment.kmix.k=0", "augment.kmix.k"), ("augment.kmix.r=0", "augment.kmix.r"),
    ("objective.params.momentum=1.5", "objective.params.momentum"),
    ("objective.params.queue_size=0", "objective.params.queue_size"),
    ("objective.params.instance_temperature=0", "objective.params.instance_temperature"),
    ("objective.params.n_clusters=1", "objective.params.n_clusters"),
    # relations between keys
    ("stats.min_files=9000", "stats.min_files and stats.max_files"),
    ("augment.kmix.r=4096", "augment.kmix.r and augment.kmix.memory"),
    ("encoder.n_mels=32", "frontend.n_mels and encoder.n_mels"),
    ("data.crop_seconds=0.01", "data.crop_seconds"),
])
def test_config_value_out_of_range_is_a_config_error_naming_key_and_value(override, key):
    """Feeds one out-of-range value per key (zero, negative, absurd, NaN, inverted pair);
    expects ConfigError '<key> must be <allowed>, got <value>' from load_config."""
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "pretrain/configs/slicer.yaml", [override])
    assert str(e.value).startswith(key) and " must be " in str(e.value) and "got " in str(e.value), str(e.value)


@pytest.mark.parametrize("objective, override, key", [
    ("byol_a", "objective.params.momentum=-0.1", "objective.params.momentum"),
    ("byol_a", "objective.params.projection_dim=0", "objective.params.projection_dim"),
    ("delores_m", "objective.params.temperature=0", "objective.params.temperature"),
    ("delores_s", "objective.params.projector_layers=0", "objective.params.projector_layers"),
    ("cola", "objective.params.embedding_dim=-1", "objective.params.embedding_dim"),
])
def test_objective_params_out_of_range_are_config_errors(objective, override, key):
    """Feeds out-of-range objective.params of every baseline; expects ConfigError naming the key."""
    with pytest.raises(ConfigError, match=rf"^{key} must be"):
        load_config(REPO / f"pretrain/configs/{objective}.yaml", [override])


def test_keep_last_negative_stops_before_any_work(tmp_path, capsys):
    """Feeds `run.keep_last=-1` on the command line (it used to delete every checkpoint);
    expects exit 2 with 'run.keep_last must be >= 1, got -1', and no output folder."""
    out = tmp_path / "run"
    assert pretrain_main(_argv(tmp_path, out, "run.keep_last=-1")) == 2
    assert "run.keep_last must be >= 1, got -1" in capsys.readouterr().err
    assert not out.exists()


def test_bad_yaml_config_and_override_name_the_file_or_override(tmp_path, capsys):
    """Feeds a config file with a YAML syntax error, one that is not UTF-8, and `--set a.b=[`;
    expects exit 2 with a message naming the file / the override (no traceback)."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("run: {steps: [1, 2\n")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"run:\n  out: caf\xe9\n")
    for path in (broken, latin):
        assert pretrain_main(["--config", str(path)]) == 2
        assert f"cannot read config file {path}" in capsys.readouterr().err
    assert pretrain_main(["--set", "run.steps=["]) == 2
    assert "override 'run.steps=['" in capsys.readouterr().err


# ----------------------------------------------------------------------------- bad files
@pytest.mark.slow  # make test-fast: over 4 s with its fixture
def test_bad_files_are_skipped_listed_and_never_stop_a_run(audio, run_dir):
    """Feeds a corpus with a float WAV of samples ~1e20, a readable file and an unreadable
    file whose names are not UTF-8; expects the run to finish (exit 0), the huge and the
    unreadable files listed in run.log with their reason (odd bytes as backslash escapes,
    no UnicodeEncodeError), the readable odd name used, finite statistics."""
    log = (run_dir / "run.log").read_text(encoding="utf-8")
    assert f"{HUGE}: out of range (peak |x| = 4.76e+19 > data.max_peak = 1000" in log
    assert "bad_\\udce9t\\udce9.wav: unreadable" in log
    assert "good_\\udcff" not in log  # read like any other file, never skipped
    ckpt = load_checkpoint(sorted((run_dir / "checkpoints").glob("step_*.pt"))[-1])
    assert np.isfinite(ckpt.norm_mean) and np.isfinite(ckpt.norm_std) and ckpt.norm_std > 0
    skipped = dict(ckpt.training_state["skipped"])
    assert set(map(lambda p: Path(p).name, skipped)) == {HUGE, ODD_BAD}
    files, bad = scan_files(find_audio_files(audio))
    assert ODD_GOOD in {p.name for p in files} and [Path(p).name for p, _ in bad] == [ODD_BAD]


def test_statistics_leave_out_crops_with_non_finite_log_mel(audio):
    """Feeds compute_stats a dataset with the out-of-range check disabled (max_peak=inf), so
    the 1e20 file reaches the log-mel; expects it listed as 'non-finite log-mel' and the
    statistics equal to those of the good files alone."""
    good = [audio / f"clip{i}.wav" for i in range(8)]
    with pytest.raises(AudioFileError, match="out of range"):
        decode_audio(audio / HUGE, SR, max_peak=1000.0)
    cfg = load_config(None, TINY)
    crop = round(cfg.data.crop_seconds * SR)
    # one file per item, crop seed fixed by the item: the huge file is index 0 of the mixed list
    mixed = compute_stats(AudioCrops([audio / HUGE] + good, SR, crop), cfg.frontend, 0, 1.0, 9, 9, 1, 1, 0)
    assert [(Path(p).name, r) for p, r in mixed.skipped] == [(HUGE, "non-finite log-mel (samples far out of range)")]
    assert mixed.n_files == 8 and np.isfinite(mixed.mean) and mixed.std > 0


# ----------------------------------------------------------------------------- run folders and resume
def test_fresh_run_refuses_a_folder_holding_another_run(audio, tmp_path, capsys):
    """Feeds `--out DIR` where DIR already holds a run (two steps); expects exit 2 'holds another
    run ... --overwrite', DIR untouched; with --overwrite the old run's files are replaced by the
    new run's only. The same folder as another tool left it (a checkpoint and run.log it wrote)
    is refused even with --overwrite (issue 29: nothing proves those files a run's)."""
    out = tmp_path / "run"
    assert pretrain_main(_argv(audio, out, "run.steps=2", "run.checkpoint_every=1")) == 0
    (out / "notes.txt").write_text("mine")
    old = (out / "checkpoints" / "step_00000002.pt").read_bytes()
    assert pretrain_main(_argv(audio, out, "run.steps=1")) == 2
    assert "holds another run" in capsys.readouterr().err
    assert (out / "checkpoints" / "step_00000002.pt").read_bytes() == old
    assert pretrain_main(_argv(audio, out, "run.steps=1") + ["--overwrite"]) == 0
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_00000001.pt"]
    assert (out / "run.log").read_text().count("pretrain: objective") == 1 and (out / "notes.txt").read_text() == "mine"
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 2  # header + the new run's one step
    theirs = tmp_path / "theirs"
    (theirs / "checkpoints").mkdir(parents=True)
    (theirs / "checkpoints" / "step_00000012.pt").write_bytes(b"old run")
    (theirs / "run.log").write_text("old log\n")
    capsys.readouterr()
    assert pretrain_main(_argv(audio, theirs, "run.steps=1")) == 2
    assert "holds files a run writes" in capsys.readouterr().err
    assert pretrain_main(_argv(audio, theirs, "run.steps=1") + ["--overwrite"]) == 2
    assert "was not written by the run" in capsys.readouterr().err
    assert (theirs / "checkpoints" / "step_00000012.pt").read_bytes() == b"old run"


def test_resume_refuses_state_mixing_changes_and_lists_accepted_ones(run_dir, tmp_path, capsys):
    """Feeds `--resume` with a changed batch size, data path, optimiser name (used to raise
    KeyError 'momentum') and a --config that changes the objective (used to be ignored);
    expects exit 2 naming each refused key and listing the keys a resume may change; then
    `--set run.steps=3 run.log_every=2` is accepted, logged in run.log, and trains step 3."""
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    for change in (["--set", "data.batch_size=8"], ["--set", f"data.path={tmp_path}"],
                   ["--set", "optim.name=sgd"], ["--set", "frontend.n_mels=32", "encoder.n_mels=32"]):
        assert pretrain_main(["--resume", str(run_dir), *change]) == 2
        err = capsys.readouterr().err
        assert "cannot resume" in err and change[1].split("=")[0] in err and "run.steps" in err, err
    other = tmp_path / "other.yaml"
    other.write_text("objective: {name: byol_a}\n")
    assert pretrain_main(["--resume", str(run_dir), "--config", str(other)]) == 2
    assert "objective.name: 'slicer' -> 'byol_a'" in capsys.readouterr().err
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before  # nothing written

    fork = tmp_path / "fork"
    latest = run_dir / "checkpoints" / "step_00000002.pt"
    assert pretrain_main(["--resume", str(latest), "--out", str(fork), "--set", "run.steps=3", "run.log_every=2"]) == 0
    log = (fork / "run.log").read_text()
    assert "changes accepted on resume" in log and "run.steps: 2 -> 3" in log and "run.log_every: 1 -> 2" in log
    assert (fork / "checkpoints" / "step_00000003.pt").is_file()
    # resuming an older checkpoint inside its own folder would mix two continuations
    assert pretrain_main(["--resume", str(run_dir / "checkpoints" / "step_00000001.pt")]) == 2
    assert "not the newest checkpoint" in capsys.readouterr().err


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_with_non_finite_weights_is_refused_at_load(run_dir, tmp_path):
    """Feeds checkpoints with a NaN weight, an Inf teacher weight, a string norm_std and a
    list as student weights; expects CheckpointError naming the entry, from load_checkpoint
    and from hear_slicer.load_model."""
    good = sorted((run_dir / "checkpoints").glob("step_*.pt"))[-1]
    d = torch.load(good, weights_only=True)
    cases = {
        "nan": (lambda c: c["student"]["fc.0.weight"].view(-1).__setitem__(0, float("nan")), "fc.0.weight"),
        "inf": (lambda c: c["teacher"]["blocks.0.0.weight"].view(-1).__setitem__(0, float("inf")), "blocks.0.0.weight"),
        "std": (lambda c: c.__setitem__("norm_std", "1.0"), "norm_std"),
        "list": (lambda c: c.__setitem__("student", [1, 2]), "student"),
    }
    for name, (spoil, where) in cases.items():
        c = {k: ({kk: vv.clone() for kk, vv in v.items()} if isinstance(v, dict) and k in ("student", "teacher")
                 else v) for k, v in d.items()}
        spoil(c)
        path = tmp_path / f"{name}.pt"
        torch.save(c, path)
        with pytest.raises(CheckpointError, match=where):
            load_checkpoint(path)
        with pytest.raises(CheckpointError, match=where):
            hear_slicer.load_model(str(path))


def test_checkpoint_write_on_full_disk_names_the_path_and_keeps_earlier_ones(run_dir, tmp_path):
    """Feeds save_checkpoint a disk that fills mid-write (RLIMIT_FSIZE: EFBIG); expects an
    OSError naming the target path, no temporary file left, and the earlier file intact."""
    ckpt = load_checkpoint(sorted((run_dir / "checkpoints").glob("step_*.pt"))[-1])
    target = tmp_path / "ckpts" / "step_00000009.pt"
    save_checkpoint(ckpt, target)
    before = target.read_bytes()
    ckpt.norm_mean += 1.0
    with file_size_limit(len(before) // 2), pytest.raises(OSError, match=f"cannot write checkpoint {target}"):
        save_checkpoint(ckpt, target)
    assert target.read_bytes() == before and [p.name for p in target.parent.iterdir()] == [target.name]


def test_training_on_a_full_disk_stops_with_the_path_and_keeps_the_last_checkpoint(audio, run_dir, tmp_path, capsys):
    """Feeds a resumed run a disk that fills before its next checkpoint (RLIMIT_FSIZE smaller
    than a checkpoint, larger than the logs); expects exit 3 'cannot write checkpoint <path>',
    the checkpoint resumed from intact and still the newest."""
    out = tmp_path / "full"
    assert pretrain_main(["--resume", str(run_dir / "checkpoints" / "step_00000002.pt"), "--out", str(out),
                          "--set", "run.steps=3"]) == 0  # a copy of the run to spoil
    size = (out / "checkpoints" / "step_00000003.pt").stat().st_size
    with file_size_limit(size // 2):
        assert pretrain_main(["--resume", str(out), "--set", "run.steps=4"]) == 3
    err = capsys.readouterr().err
    assert f"cannot write checkpoint {out / 'checkpoints' / 'step_00000004.pt'}" in err, err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000003.pt"]
    assert load_checkpoint(out / "checkpoints" / "step_00000003.pt").training_state["step"] == 3


# ----------------------------------------------------------------------------- plugin
@pytest.mark.parametrize("options, match", [
    ({"timestamp_hop_ms": 0}, "timestamp_hop_ms must be a number in"),
    ({"timestamp_hop_ms": 1e-9}, "timestamp_hop_ms"), ({"timestamp_hop_ms": float("nan")}, "timestamp_hop_ms"),
    ({"timestamp_hop_ms": True}, "timestamp_hop_ms"), ({"timestamp_hop_ms": "40"}, "timestamp_hop_ms"),
    ({"chunk_seconds": 1e9}, "chunk_seconds"), ({"chunk_seconds": 0.001}, "chunk_seconds"),
    ({"max_batch_seconds": -1}, "max_batch_seconds"), ({"context_frames": 2.5}, "context_frames must be an integer"),
    ({"context_frames": 10**9}, "context_frames"),
])
def test_plugin_option_out_of_range_is_a_value_error(options, match):
    """Feeds load_model options that are zero, tiny, NaN, bool, str, absurd or fractional;
    expects ValueError naming the option and its allowed range."""
    with pytest.raises(ValueError, match=match):
        hear_slicer.load_model(**options)


def test_plugin_path_of_wrong_type_is_a_type_error():
    """Feeds load_model(123); expects TypeError 'model_file_path must be a path'."""
    with pytest.raises(TypeError, match="model_file_path must be a path"):
        hear_slicer.load_model(123)


def test_plugin_raises_on_audio_that_would_give_non_finite_embeddings():
    """Feeds finite audio far outside [-1, 1] (1e25: the log-mel overflows float32) in a
    batch with a normal clip; expects ValueError naming sound 1 for both embedding kinds,
    and normal audio still embedding fine."""
    model = hear_slicer.load_model()
    audio = torch.rand(2, 8000) * 2 - 1
    audio[1] *= 1e25
    for fn in (hear_slicer.get_scene_embeddings, hear_slicer.get_timestamp_embeddings):
        with pytest.raises(ValueError, match=r"sound\(s\) \[1\] give non-finite embeddings"):
            fn(audio, model)
    assert torch.isfinite(hear_slicer.get_scene_embeddings(audio[:1], model)).all()


# ----------------------------------------------------------------------------- evaluation
@pytest.fixture(scope="module")
def task_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile_tasks")
    build_keyword_task(root, words=("yes", "no"), clips_per_word_per_split=2)
    return root


def _task(root: Path) -> Path:
    return next(p for p in root.iterdir() if (p / "task_metadata.json").is_file())


TOY = ModelSpec(name="toy", module="hear_toy_module")


@pytest.fixture(autouse=False)
def toy_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp/hear_slicer_hostile_pickle_ran")


def test_tampered_labels_pickle_never_runs_code(task_root, tmp_path, toy_on_path):
    """Feeds a shared embedding cache whose <split>.target-labels.pkl was replaced by a
    pickle that runs `touch` when loaded; expects UnsafePickleError from read_split and from
    the heareval protocol's link step, and the command never run."""
    MARKER.unlink(missing_ok=True)
    cache = ensure_embeddings(TOY, _task(task_root), tmp_path / "cache", lambda: load_hear_model(TOY, "cpu"),
                              progress=False)
    assert read_split(cache, "train").labels  # the untampered cache reads back
    (cache / "train.target-labels.pkl").write_bytes(pickle.dumps([["yes"], _Payload()]))
    with pytest.raises(UnsafePickleError, match="train.target-labels.pkl"):
        read_split(cache, "train")
    with pytest.raises(UnsafePickleError):
        _link_embeddings(cache, tmp_path / "work" / cache.name)
    assert not MARKER.exists()


def test_embedding_cache_on_full_disk_is_a_clear_error_never_sigbus(task_root, tmp_path, toy_on_path, monkeypatch):
    """Feeds the embedding writer a disk that fills (RLIMIT_FSIZE below the embeddings
    file); expects OSError naming the cache folder, the partial folder removed, and no
    np.memmap opened for writing (the memmap writer died with SIGBUS on a full disk)."""
    real_memmap = np.memmap

    def no_write_memmap(*args, mode="r+", **kw):
        assert mode == "r", f"np.memmap opened for writing (mode {mode!r})"
        return real_memmap(*args, mode=mode, **kw)
    monkeypatch.setattr(np, "memmap", no_write_memmap)
    model = load_hear_model(TOY, "cpu")
    with file_size_limit(600), pytest.raises(OSError, match=r"cannot write embeddings under .*\.partial"):
        ensure_embeddings(TOY, _task(task_root), tmp_path / "cache", lambda: model, progress=False)
    assert not any(p.name.endswith(".partial") for p in (tmp_path / "cache").rglob("*"))
    done = ensure_embeddings(TOY, _task(task_root), tmp_path / "cache", lambda: model, progress=False)
    assert read_split(done, "test").x.shape[0] == 4  # and the writer works once there is room


def _manifest(task_root: Path, tmp_path: Path) -> Path:
    m = tmp_path / "m.yaml"
    m.write_text(f"suite: demo\ntasks_root: {task_root}\nmodels:\n  - {{name: toy, module: hear_toy_module}}\n"
                 f"tasks:\n  - {{name: kw, path: {_task(task_root).name}}}\nprotocols:\n  linear: {{epochs: 2}}\n")
    return m


def test_corrupt_result_json_is_recomputed_by_run_and_left_out_by_report(task_root, tmp_path, toy_on_path, capsys):
    """Feeds a results folder whose only result.json was truncated mid-write; expects
    `report` to warn naming the file and succeed (cell shown as not run), and `run` to warn
    and compute that cell again (ok)."""
    manifest, out = load_manifest(_manifest(task_root, tmp_path)), tmp_path / "out"
    run_manifest(manifest, out, progress=False)
    path = cell_dir(out, "toy", "kw", "linear") / "result.json"
    path.write_text(path.read_text()[:40])
    with pytest.warns(CorruptResultWarning, match=str(path)):
        assert eval_main(["report", str(out)]) == 0
    assert "No finished cells yet" in (out / "results.md").read_text()
    with pytest.warns(CorruptResultWarning, match=str(path)):
        results = run_manifest(manifest, out, progress=False)
    assert [r.ok for r in results] == [True] and collect_results(out)[0].ok


def test_unwritable_results_are_a_clear_error_and_keep_finished_work(task_root, tmp_path, toy_on_path, capsys):
    """Feeds `report` and `run` an output they cannot write (results.md is a folder: as root,
    chmod cannot make one read-only); expects exit 3 with 'error: ...' naming the path, and
    the finished result.json untouched."""
    m, out = _manifest(task_root, tmp_path), tmp_path / "out"
    run_manifest(load_manifest(m), out, progress=False)
    result = cell_dir(out, "toy", "kw", "linear") / "result.json"
    before = result.read_bytes()
    (out / "results.md").unlink()
    (out / "results.md").mkdir()
    assert eval_main(["report", str(out)]) == 3
    assert f"{out / 'results.md'}" in capsys.readouterr().err
    assert eval_main(["run", str(m), "--out", str(out), "--no-progress"]) == 3
    assert f"{out / 'results.md'}" in capsys.readouterr().err
    assert result.read_bytes() == before
