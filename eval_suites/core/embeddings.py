"""Embeddings of a HEAR task, computed through the HEAR API and cached on disk in
exactly the layout heareval 2021.1.3's embedding runner writes.

Legend: n clips in a batch, N samples, T timestamps of a clip, D embedding size,
M rows of a split (clips for scene tasks, clips x timestamps for event tasks).

Layout of one cached task (``<cache>/<model>-<key>/<task folder name>/``), identical to
``python -m heareval.embeddings.runner MODULE --tasks-dir DIR`` so that
``heareval.predictions.runner`` scores it directly::

    task_metadata.json, labelvocabulary.csv, <split>.json      # copies from the task
    <split>/<clip>.embedding.npy          # (D,) scene, (T, D) event; np.save
    <split>/<clip>.target-labels.json     # scene: the clip's labels;
                                          # event: labels active at each timestamp
    <split>/<clip>.timestamps.json        # event only: (T,) in ms
    <split>.embedding-dimensions.json     # [M, D]
    <split>.embeddings.npy                # raw float32 np.memmap (M, D), NOT a .npy file
    <split>.target-labels.pkl             # pickled list of M label lists (for heareval)
    <split>.filename-timestamps.json      # event only: [[<split>/<clip> path, t ms], ...]
    profile.embeddings.json, .done.embeddings
    cache_key.json                        # ours: what the cache key was made of

Rows of the memmap follow heareval's order: one ``random.Random(0)`` per task shuffles
each split's clip list in turn (splits in metadata order). Clips are embedded in
heareval's batches (its batch-size estimate from ``sample_duration``), so values match
its runner to float precision. No TensorFlow is imported: only PyTorch HEAR modules
are supported, as in heareval's runner.

The cache key hashes the model's module name, the checkpoint's content (sha256), the
``load_model`` options and the task (its metadata, vocabulary and label files, and the
name and size of each audio file). A changed checkpoint or relabelled task gets a new
folder; the old one is left alone. A folder is written under ``<name>.partial`` and
renamed when complete, so an interrupted run never leaves a half-written cache entry and
a reader never sees one. Several processes may share the cache (the shards of one run,
``--shard``): a missing entry is computed under a lock on ``<entry>.lock`` (``fcntl.flock``;
on a network file system, one whose locks work across machines, such as NFSv4 or Lustre
with ``flock`` enabled), so it is computed once and no process removes another's work.

Safety: the cache may be shared, so nothing read from it can run code. The labels pickle
exists only because heareval's prediction runner reads it; this package reads it with
:func:`load_labels_pickle`, an unpickler that refuses every object that is not a list,
string or number (a tampered file is an error, never executed), and the ``heareval``
protocol hands heareval a fresh pickle of the labels so checked, not the cached file.
Writes go through ordinary file I/O (no ``np.memmap`` writer, which dies with SIGBUS on a
full disk): a full disk or read-only folder is an OSError naming the file, and the
half-written ``.partial`` folder is removed.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib
import json
import pickle
import random
import shutil
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import soundfile as sf
import torch

from hear_slicer.progress import Progress

from eval_suites.core.model_spec import ModelSpec, module_name_problem
from eval_suites.errors import DataError, UsageError, write_file
from eval_suites.hear_format.task import load_task

__all__ = [
    "DONE_FILE",
    "HearModel",
    "ModelLoadError",
    "load_hear_model",
    "load_problem",
    "file_sha256",
    "cache_key",
    "embedding_dir",
    "heareval_batch_size",
    "labels_at_timestamps",
    "write_embeddings",
    "ensure_embeddings",
    "EmbeddingSplit",
    "read_split",
    "load_labels_pickle",
    "UnsafePickleError",
]

DONE_FILE = ".done.embeddings"
KEY_FILE = "cache_key.json"
# Tolerance heareval's interval tree adds to an event's end so the end is included.
_EVENT_END_TOLERANCE_MS = 0.0001


@dataclass
class HearModel:
    """A loaded HEAR module and its model, placed on ``device``."""

    spec: ModelSpec
    module: Any
    model: torch.nn.Module
    device: torch.device

    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    @torch.no_grad()
    def scene(self, audio: np.ndarray) -> np.ndarray:
        """``audio`` (n, N) float32 -> scene embeddings (n, D) as numpy."""
        x = torch.as_tensor(audio, device=self.device)
        return self.module.get_scene_embeddings(x, self.model).detach().cpu().numpy()

    @torch.no_grad()
    def timestamps(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``audio`` (n, N) -> timestamp embeddings (n, T, D) and timestamps (n, T) ms."""
        x = torch.as_tensor(audio, device=self.device)
        emb, ts = self.module.get_timestamp_embeddings(x, self.model)
        return emb.detach().cpu().numpy(), ts.detach().cpu().numpy()


class ModelLoadError(UsageError):
    """A model spec names a module that cannot be imported, is not a PyTorch HEAR 2021 module,
    or whose ``load_model`` refuses the checkpoint or options given."""


def load_hear_model(spec: ModelSpec, device: str | torch.device | None = None) -> HearModel:
    """Import ``spec.module`` and call its ``load_model`` as heareval does.

    ``device`` defaults to CUDA when available, else CPU (heareval's choice). Raises
    :class:`ModelLoadError` naming the module when it cannot be used as a HEAR module.
    """
    problem = module_name_problem(spec.module)
    if problem:  # importlib takes '.foo' as relative and raises TypeError
        raise ModelLoadError(f"module of model {spec.name!r}: {problem}")
    try:
        module = importlib.import_module(spec.module)
    except ImportError as e:
        raise ModelLoadError(f"module {spec.module!r} (model {spec.name!r}) cannot be imported "
                             f"({type(e).__name__}: {e}); install it or put it on PYTHONPATH") from e
    for fn in ("load_model", "get_scene_embeddings", "get_timestamp_embeddings"):
        if not callable(getattr(module, fn, None)):
            raise ModelLoadError(f"module {spec.module!r} (model {spec.name!r}) is not a HEAR 2021 "
                                 f"module: it has no function {fn}()")
    args = (str(spec.checkpoint),) if spec.checkpoint is not None else ()
    try:
        model = module.load_model(*args, **spec.options)
    except (TypeError, ValueError) as e:  # an unknown option, a value out of range, a bad checkpoint
        given = f"checkpoint {spec.checkpoint} and options {spec.options}" if args else f"options {spec.options}"
        raise ModelLoadError(f"{spec.module}.load_model refused the {given} (model {spec.name!r}): "
                             f"{type(e).__name__}: {e}") from e
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"{spec.module}.load_model returned {type(model).__name__}; only "
                             f"PyTorch HEAR models (torch.nn.Module) are supported")
    for attr in ("sample_rate", "scene_embedding_size", "timestamp_embedding_size"):
        if not isinstance(getattr(model, attr, None), int):
            raise ModelLoadError(f"{spec.module}.load_model returned a model without the int "
                                 f"attribute {attr!r} the HEAR API requires")
    dev = torch.device(device if device is not None
                       else ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(dev)
    return HearModel(spec=spec, module=module, model=model, device=dev)


def load_problem(spec: ModelSpec) -> str | None:
    """Why every cell of ``spec`` would fail to load it in ``run`` (the message of the
    :class:`ModelLoadError` that :func:`load_hear_model` raises: an option ``load_model`` does
    not take, a value out of range, a checkpoint it refuses), or None when it loads. The model
    is loaded on the CPU and released; ``list`` calls this, so that it refuses what ``run`` would."""
    try:
        load_hear_model(spec, device="cpu")
    except ModelLoadError as e:
        return str(e)
    return None


# --------------------------------------------------------------------------- cache key


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _task_fingerprint(task_dir: Path) -> str:
    """sha256 over the task's metadata, vocabulary and label files (their content), and
    the name, size and modification time (ns) of every audio file.

    Audio content is not read (it would cost a full pass over the task), but any rewrite
    of a clip changes its mtime, so changed audio or labels give a new fingerprint; a
    copy of the task that does not keep mtimes (``cp`` without ``-p``) does too, which
    costs one recomputation and never serves stale embeddings.
    """
    h = hashlib.sha256()
    for f in sorted(task_dir.glob("*.json")) + [task_dir / "labelvocabulary.csv"]:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    for wav in sorted(task_dir.glob("*/*/*.wav")):
        st = wav.stat()
        h.update(f"{wav.relative_to(task_dir)}:{st.st_size}:{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def cache_key(spec: ModelSpec, task_dir: str | Path) -> dict[str, Any]:
    """What identifies a cached embedding folder; ``key["digest"]`` names it."""
    task_dir = Path(task_dir)
    parts = {
        "module": spec.module,
        "checkpoint_sha256": file_sha256(spec.checkpoint) if spec.checkpoint else None,
        "options": spec.options,
        "task": task_dir.name,
        "task_sha256": _task_fingerprint(task_dir),
    }
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return {**parts, "digest": hashlib.sha256(blob).hexdigest()[:16]}


def embedding_dir(cache_root: str | Path, spec: ModelSpec, task_dir: str | Path,
                  key: dict[str, Any] | None = None) -> Path:
    """``<cache_root>/<model name>-<digest>/<task folder name>``."""
    key = key or cache_key(spec, task_dir)
    return Path(cache_root) / f"{spec.name}-{key['digest']}" / Path(task_dir).name


# --------------------------------------------------------------------------- writer


def heareval_batch_size(sample_duration: float | None, sample_rate: int) -> int:
    """heareval's batch size: clips of ``sample_duration`` s are batched so that a batch
    holds about 84 s of 16 kHz audio; variable-length clips go one at a time."""
    if sample_duration is None:
        return 1
    return max(1, int(0.7 * (120 / sample_duration) * (16000 / sample_rate)))


def labels_at_timestamps(events: list[dict], timestamps: np.ndarray) -> list[list[str]]:
    """Labels active at each timestamp (ms): ``start <= t < end + 0.0001``, each
    distinct event counted once (heareval's interval-tree lookup).

    events: [{"label", "start", "end"}] in ms; timestamps: (T,) -> T label lists.
    """
    intervals = sorted({(float(e["start"]), float(e["end"]) + _EVENT_END_TOLERANCE_MS,
                         e["label"]) for e in events})
    return [[lbl for start, end, lbl in intervals if start <= t < end] for t in timestamps]


class UnsafePickleError(DataError):
    """A labels pickle holds something other than lists, strings and numbers."""


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles lists, tuples, dicts, strings, numbers, booleans and None only: any class
    or function reference (how a pickle runs code) is refused."""

    def find_class(self, module: str, name: str):
        raise UnsafePickleError(f"refusing to load {module}.{name}: a labels file holds only lists of labels")


def load_labels_pickle(path: str | Path) -> list:
    """A ``<split>.target-labels.pkl`` list, read without running any code it may hold."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            labels = _PlainUnpickler(fh).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}; the file was not written by this package (tampered cache?). "
                                "Delete the cache folder to recompute it.") from e
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
        raise DataError(f"{path} is corrupt ({type(e).__name__}: {e}); delete the cache folder to recompute it") from e
    if not isinstance(labels, list):
        raise DataError(f"{path}: expected a list of label lists, got {type(labels).__name__}")
    return labels


def _write_split_memmap(outdir: Path, names: list[str], prng: random.Random, embedding_type: str,
                        prediction_type: str, split: str, embed_task_dir: Path,
                        slug_dir: Path) -> None:
    """Gather a split's per-clip files into ``<split>.embeddings.npy`` (memmap) and
    ``<split>.target-labels.pkl`` in heareval's shuffled order. Event rows are named
    ``<slug_dir>/<split>/<clip>`` (heareval keeps the path; only its last part is used)."""
    files = [outdir / f"{name}.embedding.npy" for name in names]
    prng.shuffle(files)
    arrays = [np.load(f).astype(np.float32) for f in files]
    expected_ndim = 1 if embedding_type == "scene" else 2
    for f, a in zip(files, arrays):
        if a.ndim != expected_ndim:
            raise ValueError(f"{f}: expected a {expected_ndim}-d {embedding_type} embedding, "
                             f"got shape {a.shape}")
    rows = sum(1 if a.ndim == 1 else a.shape[0] for a in arrays)
    dim = arrays[-1].shape[-1]
    write_file(embed_task_dir / f"{split}.embedding-dimensions.json",
               lambda fh: fh.write(json.dumps((rows, dim))), mode="w")
    blocks: list[np.ndarray] = []  # the rows of the (M, D) matrix, in order
    labels: list = []
    filename_timestamps: list = []
    for f, emb in zip(files, arrays):
        lbl = json.loads(Path(str(f).replace("embedding.npy", "target-labels.json")).read_text())
        if embedding_type == "scene":
            if prediction_type == "multiclass" and len(lbl) != 1:
                raise ValueError(f"{f}: multiclass clip with labels {lbl!r}; expected exactly one")
            blocks.append(emb[None])
            labels.append(lbl)
        else:
            ts = json.loads(Path(str(f).replace("embedding.npy", "timestamps.json")).read_text())
            if not (emb.shape[0] == len(lbl) == len(ts)):
                raise ValueError(f"{f}: {emb.shape[0]} embeddings, {len(ts)} timestamps and "
                                 f"{len(lbl)} label lists; expected the same number")
            blocks.append(emb)
            labels += lbl
            slug = str(slug_dir / split / f.name).replace(".embedding.npy", "")
            filename_timestamps += [(slug, t) for t in ts]

    def write_rows(fh) -> None:  # raw float32 rows, the bytes np.memmap(mode="w+") would hold
        for block in blocks:
            fh.write(np.ascontiguousarray(block, dtype=np.float32).tobytes())
    write_file(embed_task_dir / f"{split}.embeddings.npy", write_rows)
    write_file(embed_task_dir / f"{split}.target-labels.pkl", lambda fh: pickle.dump(labels, fh))
    if embedding_type == "event":
        write_file(embed_task_dir / f"{split}.filename-timestamps.json",
                   lambda fh: fh.write(json.dumps(filename_timestamps, indent=4)), mode="w")


def write_embeddings(model: HearModel, task_dir: str | Path, out_dir: str | Path,
                     progress: bool = True, final_dir: str | Path | None = None) -> Path:
    """Embed every clip of the task at ``task_dir`` into ``out_dir`` (heareval layout).

    ``final_dir`` is where ``out_dir`` will be moved once complete (default: ``out_dir``);
    the clip paths in ``<split>.filename-timestamps.json`` name it.

    Clip names are checked by ``HearTask.audio_path``: a name leading outside the task
    folder raises ``ValueError`` before anything is read.
    """
    task = load_task(task_dir)
    meta = task.metadata
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(task_dir)
    shutil.copy(root / "task_metadata.json", out)
    shutil.copy(root / "labelvocabulary.csv", out)
    sr = model.sample_rate
    batch = heareval_batch_size(meta.sample_duration, sr)
    prng = random.Random(0)
    n_clips = sum(len(task.labels[split]) for split in meta.splits)
    bar = Progress(n_clips, f"embed {root.name}", unit="clip", enabled=progress, leave=False)
    for split in meta.splits:
        shutil.copy(root / f"{split}.json", out)
        split_labels = task.labels[split]
        names = list(split_labels)
        paths = [task.audio_path(split, name, sample_rate=sr) for name in names]  # checks names
        if not paths[0].parent.is_dir():
            raise FileNotFoundError(f"task {root.name} has no audio at the model's sample rate "
                                    f"{sr} Hz (expected folder {paths[0].parent})")
        outdir = out / split
        outdir.mkdir(exist_ok=True)
        for start in range(0, len(names), batch):
            chunk = names[start:start + batch]
            audios = []
            for name, path in zip(chunk, paths[start:start + batch]):
                audio, file_sr = sf.read(str(path), dtype=np.float32)
                if file_sr != sr:
                    raise ValueError(f"{path}: sample rate {file_sr}, expected {sr}")
                if audio.ndim != 1:  # HEAR task audio is mono; not a length problem
                    raise DataError(f"{path}: {audio.shape[1]} channels; HEAR task audio must be mono "
                                    "(one channel)")
                audios.append(audio)
            lengths = {a.shape for a in audios}
            if len(lengths) != 1:
                raise ValueError(f"task {root.name} split {split}: clips of different lengths "
                                 f"{sorted(lengths)} in one batch; sample_duration must be null "
                                 f"for variable-length clips")
            audio = np.stack(audios)  # (n, N)
            if meta.embedding_type == "scene":
                emb = model.scene(audio)  # (n, D)
                for i, name in enumerate(chunk):
                    np.save(outdir / f"{name}.embedding.npy", emb[i])
                    (outdir / f"{name}.target-labels.json").write_text(
                        json.dumps(split_labels[name]))
            else:
                emb, ts = model.timestamps(audio)  # (n, T, D), (n, T)
                for i, name in enumerate(chunk):
                    if ts[i].ndim != 1:
                        raise ValueError(f"{model.spec.module}: timestamps of one clip must be "
                                         f"1-d, got shape {ts[i].shape}")
                    np.save(outdir / f"{name}.embedding.npy", emb[i])
                    (outdir / f"{name}.timestamps.json").write_text(json.dumps(ts[i].tolist()))
                    lbl = labels_at_timestamps(split_labels[name], ts[i])
                    (outdir / f"{name}.target-labels.json").write_text(json.dumps(lbl, indent=4))
            bar.update(len(chunk))
        _write_split_memmap(outdir, names, prng, meta.embedding_type, meta.prediction_type,
                            split, out, Path(final_dir) if final_dir is not None else out)
    bar.close(f"{n_clips} clips embedded with {model.spec.name}")
    return out


def ensure_embeddings(spec: ModelSpec, task_dir: str | Path, cache_root: str | Path,
                      get_model: Callable[[], HearModel], progress: bool = True) -> Path:
    """The cached embedding folder of (``spec``, ``task_dir``), computed if missing.

    ``get_model()`` is called only on a cache miss (so a fully cached run never loads
    a model). Safe under concurrent callers (shards of one run, other processes sharing
    the cache): a finished entry is read without locking; a missing or damaged one is
    computed under the entry's lock (:func:`_entry_lock`), so one caller computes it while
    the others wait and then read it.
    """
    key = cache_key(spec, task_dir)
    final = embedding_dir(cache_root, spec, task_dir, key)
    if (final / DONE_FILE).is_file() and _cache_problem(final) is None:
        return final
    with _entry_lock(final):
        if (final / DONE_FILE).is_file():  # finished while this caller waited, or damaged
            problem = _cache_problem(final)
            if problem is None:
                return final
            warnings.warn(f"embedding cache {final} is damaged ({problem}); recomputing it", stacklevel=2)
        return _compute_entry(final, key, task_dir, get_model, progress)


def _compute_entry(final: Path, key: dict[str, Any], task_dir: str | Path,
                   get_model: Callable[[], HearModel], progress: bool) -> Path:
    """Embed the task into ``<final>.partial`` and rename it to ``final``; the caller holds
    the entry's lock."""
    partial = final.with_name(final.name + ".partial")
    for stale in (partial, final):
        if stale.exists():
            shutil.rmtree(stale)
    model = get_model()
    start = time.time()
    try:
        write_embeddings(model, task_dir, partial, progress=progress, final_dir=final)
        profile = {"time_elapsed": time.time() - start, "gpu_max_mem": None, "gpu_device_name": str(model.device)}
        write_file(partial / "profile.embeddings.json", lambda fh: fh.write(json.dumps(profile, indent=4)), "w")
        write_file(partial / KEY_FILE, lambda fh: fh.write(json.dumps(key, indent=1, default=str)), "w")
        write_file(partial / DONE_FILE, lambda fh: None, "w")
    except OSError as e:
        shutil.rmtree(partial, ignore_errors=True)  # free what the failed write took; other entries stay
        raise OSError(e.errno, f"cannot write embeddings under {partial} ({e}); that partial folder was "
                               "removed, finished cache entries and results are intact") from e
    partial.rename(final)
    return final


@contextmanager
def _entry_lock(final: Path) -> Iterator[None]:
    """Hold the exclusive lock of the cache entry ``final``: ``fcntl.flock`` on the file
    ``<final>.lock`` next to it (kept afterwards: removing a lock file races with its next
    user). The lock is released when its holder exits, even by a crash or a kill, so a
    dead job never blocks the others; a waiting caller says so once on stderr."""
    lock_path = final.with_name(final.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process computing the embeddings {final}", file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cache_problem(d: Path) -> str | None:
    """What is wrong with a finished cache folder at a glance (sizes, not content), or None."""
    try:
        splits = json.loads((d / "task_metadata.json").read_text())["splits"]
        for split in splits:
            rows, dim = json.loads((d / f"{split}.embedding-dimensions.json").read_text())
            size = (d / f"{split}.embeddings.npy").stat().st_size
            if size != rows * dim * 4:
                return f"{split}.embeddings.npy holds {size} bytes, expected {rows} x {dim} float32"
            if not (d / f"{split}.target-labels.pkl").is_file():
                return f"{split}.target-labels.pkl is missing"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{type(e).__name__}: {e}"
    return None


# --------------------------------------------------------------------------- reader


@dataclass
class EmbeddingSplit:
    """One split of a cached task as heareval reads it.

    x: (M, D) float32; labels: M label lists; filename_timestamps: M (clip name, t ms)
    pairs for event tasks (None for scene tasks).
    """

    x: np.ndarray
    labels: list[list[str]]
    filename_timestamps: list[tuple[str, float]] | None


def read_split(embed_dir: str | Path, split: str) -> EmbeddingSplit:
    """Read ``<split>.embeddings.npy`` (raw memmap), its labels and, for event tasks,
    its (clip name, timestamp) rows from a cached task folder."""
    d = Path(embed_dir)
    rows, dim = json.loads((d / f"{split}.embedding-dimensions.json").read_text())
    size = (d / f"{split}.embeddings.npy").stat().st_size
    if size != rows * dim * 4:
        raise ValueError(f"{d / f'{split}.embeddings.npy'} holds {size} bytes, expected {rows} x {dim} float32; "
                         "the cache is corrupt, delete the folder to recompute it")
    x = np.array(np.memmap(d / f"{split}.embeddings.npy", dtype=np.float32, mode="r",
                           shape=(rows, dim)))  # (M, D)
    labels = load_labels_pickle(d / f"{split}.target-labels.pkl")
    ft_path = d / f"{split}.filename-timestamps.json"
    ft = None
    if ft_path.is_file():
        ft = [(Path(slug).name, float(t)) for slug, t in json.loads(ft_path.read_text())]
    if len(labels) != rows or (ft is not None and len(ft) != rows):
        raise ValueError(f"{d}: split {split!r} has {rows} embeddings but {len(labels)} label "
                         f"rows; the cache is corrupt, delete the folder to recompute it")
    if not np.isfinite(x).all():
        raise ValueError(f"{d}: split {split!r} has NaN or infinite embeddings")
    return EmbeddingSplit(x=x, labels=labels, filename_timestamps=ft)
