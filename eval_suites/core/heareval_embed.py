"""``python -m eval_suites embed``: heareval's embedding runner, file for file, without TensorFlow.

Legend: n clips in a batch, N samples, T timestamps of a clip, D embedding size,
M rows of a split (clips for scene tasks, clips x timestamps for event tasks).

Why: ``python -m heareval.embeddings.runner`` (heareval 2021.1.3) raises at import on any
machine where torch sees a GPU and TensorFlow does not (``heareval/embeddings/runner.py``,
line 21: ``torch.cuda.is_available() and not tf.test.is_gpu_available()``), and this project
installs ``tensorflow-cpu``, which never sees one. This command writes the same folders:

    python -m eval_suites embed MODULE [--model CKPT] [--tasks-dir tasks] [--task all]
                                       [--embeddings-dir embeddings] [--model-options JSON]
                                       [--device cuda]
    python -m heareval.predictions.runner embeddings/MODULE/*     # scores them as usual

Layout and bytes (``<embeddings-dir>/<MODULE><options>/<task folder name>/``), as heareval's
``task_embeddings``: the task's ``task_metadata.json``, ``labelvocabulary.csv`` and
``<split>.json``; per clip ``<split>/<clip>.embedding.npy`` (np.save), ``.target-labels.json``
and, for event tasks, ``.timestamps.json``; per split ``<split>.embedding-dimensions.json``,
``<split>.embeddings.npy`` (the raw float32 bytes of heareval's np.memmap (M, D), not a .npy file),
``<split>.target-labels.pkl`` (a pickled list of M label lists: heareval's prediction runner
reads exactly this) and, for event tasks, ``<split>.filename-timestamps.json``; then
``profile.embeddings.json`` and ``.done.embeddings``. Clips are batched as heareval batches
them, rows are shuffled by heareval's ``random.Random(0)`` per task, and the labels active at
each timestamp come from ``intervaltree`` queried as heareval queries it (so labels within a
frame come in heareval's order). On the same device and thread count every file is the same
byte for byte, except ``profile.embeddings.json`` (wall time; ``gpu_max_mem`` is torch's peak
reserved memory in GB where heareval reads NVML's used memory of GPU 0).

This writer is kept apart from ``eval_suites.core.embeddings`` (the evaluation suite's own cache):
it writes heareval's format, pickle included, because that is what heareval reads; the
suite's cache may change its own format without changing this one.

Differences that never change a file: a task folder is written under ``<task>.partial`` and
renamed when complete; an existing unfinished folder (no ``.done.embeddings``) is refused,
not deleted; clip names that lead outside the task folder are refused before reading. Every
file is written with plain file writes (heareval writes the rows through a writable
``np.memmap``, which dies with SIGBUS when the disk fills): a full disk or read-only folder
is an OSError naming the file, and the task's ``.partial`` folder is removed.

Errors: bad arguments (``--model-options``, ``--device``, ``--task``, an unfinished output
folder) are :class:`EmbedError`, a module that cannot serve is
:class:`eval_suites.core.embeddings.ModelLoadError` (both exit 2); a write that fails is an
OSError (exit 3); see :mod:`eval_suites.errors`.
"""
from __future__ import annotations

import json
import pickle
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from hear_slicer.progress import Progress

from eval_suites.core.embeddings import HearModel, heareval_batch_size, load_hear_model
from eval_suites.errors import DataError, UsageError, write_file
from eval_suites.hear_format.task import HearTask, load_task

__all__ = ["DONE_FILE", "EmbedError", "options_suffix", "event_labels", "write_task", "embed_tasks",
           "add_embed_parser"]

DONE_FILE = ".done.embeddings"


class EmbedError(UsageError):
    """A bad argument of ``python -m eval_suites embed`` (options, device, task, output folder)."""


def _write_text(path: Path, text: str) -> None:
    write_file(path, lambda fh: fh.write(text), mode="w")


def _save_npy(path: Path, array: np.ndarray) -> None:
    write_file(path, lambda fh: np.save(fh, array))


def _copy(source: Path, folder: Path) -> None:
    """``source`` copied into ``folder`` under its own name."""
    data = source.read_bytes()
    write_file(folder / source.name, lambda fh: fh.write(data))


def options_suffix(options: dict[str, Any]) -> str:
    """heareval's folder suffix for ``--model-options``: ``-k1=v1-k2=v2`` (slugified), or ''."""
    if not options:
        return ""
    from slugify import slugify  # python-slugify, as heareval

    return "-" + "-".join(f"{slugify(k)}={slugify(str(v))}" for k, v in options.items())


def event_labels(events: list[dict], timestamps: np.ndarray) -> list[list[str]]:
    """Labels active at each timestamp (ms), listed in the order heareval lists them: an
    ``IntervalTree`` of ``[start, end + 0.0001)`` per event, queried at each timestamp.

    events: [{"label", "start", "end"}] in ms; timestamps: (T,) -> T label lists.
    """
    from intervaltree import IntervalTree

    tree = IntervalTree()
    for e in events:
        tree.addi(e["start"], e["end"] + 0.0001, e["label"])
    return [[interval.data for interval in tree[t]] for t in timestamps]


def _embed_split(model: HearModel, task: HearTask, split: str, split_data: dict, batch: int,
                 embedding_type: str, outdir: Path, progress: bool) -> None:
    """Per-clip files of one split, in heareval's batches (clips in the label file's order)."""
    task_dir = task.root
    names = list(split_data)
    sr = model.sample_rate
    paths = [task.audio_path(split, name, sample_rate=sr) for name in names]  # refuses escaping names
    if names and not paths[0].parent.is_dir():
        raise FileNotFoundError(f"task {task_dir.name} has no audio at the model's sample rate {sr} Hz "
                                f"(expected folder {paths[0].parent})")
    bar = Progress(len(names), f"embed {task_dir.name} {split}", unit="clip", enabled=progress, leave=False)
    for start in range(0, len(names), batch):
        chunk = names[start:start + batch]
        audios = []
        for path in paths[start:start + batch]:
            try:
                audio, file_sr = sf.read(str(path), dtype=np.float32)
            except sf.SoundFileError as e:  # not audio, truncated
                raise DataError(f"{path}: not readable audio ({e})") from e
            if file_sr != sr:
                raise DataError(f"{path}: sample rate {file_sr} Hz, expected {sr} Hz")
            if audio.ndim != 1:  # HEAR task audio is mono; not a length problem
                raise DataError(f"{path}: {audio.shape[1]} channels; HEAR task audio must be mono (one channel)")
            audios.append(audio)
        if len({a.shape for a in audios}) != 1:
            raise DataError(f"task {task_dir.name} split {split}: clips of different shapes "
                            f"{sorted({a.shape for a in audios})} in one batch; sample_duration must be "
                            "null in task_metadata.json for variable-length clips")
        audio = np.stack(audios)  # (n, N)
        try:
            if embedding_type == "scene":
                emb = model.scene(audio)  # (n, D)
            else:
                emb, ts = model.timestamps(audio)  # (n, T, D), (n, T) ms
        except ValueError as e:  # the module refuses this audio (e.g. it would give non-finite embeddings)
            raise DataError(f"task {task_dir.name} split {split}, clips {chunk[0]} .. {chunk[-1]}: "
                            f"{model.spec.module} refused them: {e}") from e
        if embedding_type == "scene":
            for i, name in enumerate(chunk):
                _save_npy(outdir / f"{name}.embedding.npy", emb[i])
                _write_text(outdir / f"{name}.target-labels.json", json.dumps(split_data[name]))
        else:
            for i, name in enumerate(chunk):
                if ts[i].ndim != 1:
                    raise DataError(f"{model.spec.module}: timestamps of one clip must be 1-d, got shape "
                                    f"{ts[i].shape}")
                _save_npy(outdir / f"{name}.embedding.npy", emb[i])
                _write_text(outdir / f"{name}.timestamps.json", json.dumps(ts[i].tolist()))
                labels = event_labels(split_data[name], ts[i])
                _write_text(outdir / f"{name}.target-labels.json", json.dumps(labels, indent=4))
        bar.update(len(chunk))
    bar.close()


def _gather_split(outdir: Path, final_outdir: Path, prng: random.Random, metadata: dict, split: str,
                  split_data: dict, task_out: Path) -> None:
    """``<split>.embeddings.npy`` (raw float32 rows, the bytes of heareval's memmap),
    ``.embedding-dimensions.json``, ``.target-labels.pkl`` and (event)
    ``.filename-timestamps.json`` from the per-clip files, rows in heareval's order.
    Clip paths in ``filename-timestamps.json`` name ``final_outdir``, where the folder will live."""
    names = list(split_data)
    prng.shuffle(names)
    kind = metadata["embedding_type"]
    arrays = [np.load(outdir.joinpath(f"{name}.embedding.npy")) for name in names]
    want = 1 if kind == "scene" else 2
    for name, a in zip(names, arrays):
        if a.ndim != want:
            raise DataError(f"{outdir / name}: expected a {want}-d {kind} embedding, got shape {a.shape}")
    rows = sum(1 if kind == "scene" else a.shape[0] for a in arrays)
    dim = arrays[-1].shape[-1] if arrays else 0
    _write_text(task_out / f"{split}.embedding-dimensions.json", json.dumps((rows, dim)))
    blocks: list[np.ndarray] = []  # the rows of the (M, D) matrix, in order
    labels: list = []
    filename_timestamps: list = []
    for name, emb in zip(names, arrays):
        lbl = json.loads(outdir.joinpath(f"{name}.target-labels.json").read_text())
        if kind == "scene":
            if metadata["prediction_type"] == "multiclass" and len(lbl) != 1:
                raise DataError(f"clip {name!r} of split {split}: multiclass task but labels {lbl!r}; "
                                "expected exactly one")
            blocks.append(emb[None])  # (1, D)
            labels.append(lbl)
        else:
            ts = json.loads(outdir.joinpath(f"{name}.timestamps.json").read_text())
            if not emb.shape[0] == len(lbl) == len(ts):
                raise DataError(f"clip {name!r} of split {split}: {emb.shape[0]} embeddings, {len(ts)} "
                                f"timestamps and {len(lbl)} label lists; expected the same number")
            blocks.append(emb)  # (T, D)
            labels += lbl
            slug = str(final_outdir.joinpath(f"{name}.embedding.npy")).replace(".embedding.npy", "")
            filename_timestamps += [(slug, t) for t in ts]

    def write_rows(fh) -> None:  # the bytes np.memmap(mode="w+", dtype=float32) would hold
        for block in blocks:
            fh.write(np.ascontiguousarray(block, dtype=np.float32).tobytes())
    write_file(task_out / f"{split}.embeddings.npy", write_rows)
    write_file(task_out / f"{split}.target-labels.pkl", lambda fh: pickle.dump(labels, fh))  # heareval's format
    if kind == "event":
        _write_text(task_out / f"{split}.filename-timestamps.json", json.dumps(filename_timestamps, indent=4))


def write_task(model: HearModel, task_dir: str | Path, out_dir: str | Path, final_dir: str | Path | None = None,
               progress: bool = True) -> Path:
    """Embed one HEAR task folder into ``out_dir`` exactly as heareval's ``task_embeddings``.

    ``final_dir`` (default ``out_dir``): where the folder will be once complete, as the
    path heareval would write (the event tasks' ``filename-timestamps.json`` names it).
    Writes everything but ``profile.embeddings.json`` and ``.done.embeddings``.
    """
    task_dir, out = Path(task_dir), Path(out_dir)
    final = Path(final_dir) if final_dir is not None else out
    task = load_task(task_dir)  # checks the task's files first
    metadata = json.loads((task_dir / "task_metadata.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    _copy(task_dir / "task_metadata.json", out)
    _copy(task_dir / "labelvocabulary.csv", out)
    batch = heareval_batch_size(metadata["sample_duration"], model.sample_rate)
    prng = random.Random()
    prng.seed(0)
    for split in metadata["splits"]:
        split_path = task_dir / f"{split}.json"
        if not split_path.is_file():
            raise FileNotFoundError(f"task {task_dir.name}: split file {split_path} is missing")
        _copy(split_path, out)
        split_data = json.loads(split_path.read_text())
        (out / split).mkdir(exist_ok=True)
        _embed_split(model, task, split, split_data, batch, metadata["embedding_type"], out / split, progress)
        _gather_split(out / split, final.joinpath(split), prng, metadata, split, split_data, out)
    return out


def _profile(model: HearModel, seconds: float) -> dict[str, Any]:
    """heareval's ``profile.embeddings.json`` fields (GPU memory from torch, in GB)."""
    if model.device.type == "cuda":
        return {"time_elapsed": seconds, "gpu_max_mem": torch.cuda.max_memory_reserved(model.device) / 1024 ** 3,
                "gpu_device_name": torch.cuda.get_device_name(model.device)}
    return {"time_elapsed": seconds, "gpu_max_mem": None, "gpu_device_name": "cpu"}


def embed_tasks(module: str, tasks_dir: str | Path, embeddings_dir: str | Path = "embeddings",
                model_path: str | None = None, options: dict[str, Any] | None = None, task: str = "all",
                device: str | None = None, progress: bool = True) -> list[Path]:
    """heareval's runner: embed every task folder of ``tasks_dir`` (or ``task``) with ``module``
    into ``<embeddings_dir>/<module><options>/<task>``; finished tasks are skipped.
    Returns the task folders that are complete."""
    from eval_suites.core.model_spec import ModelSpec, module_name_problem

    problem = module_name_problem(module)
    if problem:  # before it names a folder: '.foo' or '../x' would be one outside embeddings_dir
        raise EmbedError(f"MODULE {module!r}: {problem}")
    options = dict(options or {})
    tasks_root = Path(tasks_dir)
    if not tasks_root.is_dir():
        raise FileNotFoundError(f"--tasks-dir {tasks_root} is not a folder of HEAR tasks")
    if task == "all":
        candidates = sorted(p for p in tasks_root.iterdir() if p.is_dir())
        tasks = [p for p in candidates if (p / "task_metadata.json").is_file()]
        for p in sorted(set(candidates) - set(tasks)):
            print(f"skipping {p}: not a HEAR task folder (no task_metadata.json)")
    else:
        tasks = [tasks_root / task]
        if not (tasks[0] / "task_metadata.json").is_file():
            raise FileNotFoundError(f"--task {task}: {tasks[0]} is not a HEAR task folder (no task_metadata.json)")
    if not tasks:
        raise FileNotFoundError(f"no HEAR task folder (with task_metadata.json) in {tasks_root}")
    module_dir = Path(embeddings_dir).joinpath(module + options_suffix(options))
    todo = []
    for t in tasks:
        final = module_dir.joinpath(t.name)
        if final.joinpath(DONE_FILE).is_file():
            print(f"{final}: done already, skipped")
        elif final.exists():
            raise EmbedError(f"{final} exists but is unfinished (no {DONE_FILE}); it is not ours to delete: "
                             "remove it yourself or choose another --embeddings-dir")
        else:
            todo.append(t)
    done = [module_dir.joinpath(t.name) for t in tasks if t not in todo]
    if not todo:
        return done
    spec = ModelSpec(name=module, module=module, checkpoint=Path(model_path) if model_path else None, options=options)
    model = load_hear_model(spec, device=device)
    print(f"embedding {len(todo)} task(s) with {module} on {model.device} into {module_dir}")
    tasks_bar = Progress(len(todo), "tasks", unit="task", enabled=progress)
    for t in todo:
        final = module_dir.joinpath(t.name)
        partial = final.with_name(final.name + ".partial")
        if partial.exists():  # this command's own unfinished output of an interrupted run
            shutil.rmtree(partial)
        if model.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(model.device)
        start = time.time()
        try:
            write_task(model, t, partial, final_dir=final, progress=progress)
            elapsed = time.time() - start
            _write_text(partial / "profile.embeddings.json", json.dumps(_profile(model, elapsed), indent=4))
            _write_text(partial / DONE_FILE, "")
        except OSError as e:
            shutil.rmtree(partial, ignore_errors=True)  # free what the failed write took; finished tasks stay
            raise OSError(e.errno, f"{e.strerror or e}; the unfinished {partial} was removed, finished task "
                                   "folders are intact") from e
        partial.rename(final)
        tasks_bar.done(f"computed embeddings in {elapsed:.1f} s for {t.name} using {module}: {final}")
        done.append(final)
    tasks_bar.close()
    return done


# --------------------------------------------------------------------------- command line


def add_embed_parser(sub) -> None:
    """The ``embed`` subcommand of ``python -m eval_suites``."""
    p = sub.add_parser(
        "embed", help="write heareval's embedding folders (as heareval.embeddings.runner; works on GPU machines)",
        description="Compute a HEAR module's embeddings of HEAR task folders into exactly the files "
                    "`python -m heareval.embeddings.runner` writes, without TensorFlow, so that it also runs "
                    "where torch sees a GPU (heareval's runner refuses to start there with tensorflow-cpu). "
                    "Then score: python -m heareval.predictions.runner EMBEDDINGS_DIR/MODULE/*")
    p.add_argument("module", help="HEAR module to import, e.g. hear_slicer")
    p.add_argument("--model", default=None, help="checkpoint passed to load_model (default: the module's default)")
    p.add_argument("--tasks-dir", default="tasks", help="folder holding HEAR task folders (default: tasks)")
    p.add_argument("--task", default="all", help="one task folder name (default: all)")
    p.add_argument("--embeddings-dir", default="embeddings", help="output root (default: embeddings)")
    p.add_argument("--model-options", default="{}", help="JSON dict of keyword arguments for load_model")
    p.add_argument("--device", default=None,
                   help="torch device: cpu, cuda or cuda:N (default: cuda if available, else cpu, as heareval)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run_embed_command)


def _check_args(args) -> dict[str, Any]:
    if args.model is not None and not Path(args.model).is_file():
        raise FileNotFoundError(f"--model {args.model}: no such file")
    try:
        options = json.loads(args.model_options)
    except (json.JSONDecodeError, RecursionError) as e:
        raise EmbedError(f"--model-options {args.model_options[:80]!r} is not JSON ({type(e).__name__}: {e}); "
                         'expected a JSON dict such as \'{"timestamp_hop_ms": 25}\'') from e
    if not isinstance(options, dict):
        raise EmbedError(f"--model-options must be a JSON dict, got {args.model_options!r}")
    if args.device is not None:
        try:
            dev = torch.device(args.device)
        except RuntimeError as e:
            raise EmbedError(f"--device {args.device!r} is not a torch device; use cpu, cuda or cuda:N") from e
        if dev.type not in ("cpu", "cuda"):
            raise EmbedError(f"--device {args.device!r}: only cpu and cuda devices are supported")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise EmbedError(f"--device {args.device}: torch sees no CUDA GPU here; use --device cpu")
    return options


def run_embed_command(args) -> int:
    """Run ``embed``; its errors (:class:`EmbedError`, ``ModelLoadError``, OSError, ...) are
    left to the command line's one error path (:func:`eval_suites.errors.run_command`)."""
    options = _check_args(args)
    embed_tasks(args.module, args.tasks_dir, args.embeddings_dir, args.model, options, args.task,
                args.device, progress=not args.no_progress)
    return 0
