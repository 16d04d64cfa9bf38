"""Hostile inputs to the evaluation side, round two (issue 21): one test per example, each
naming what it feeds and the error, skip or result it expects.

Classes: the shared cache's labels pickle read again after heareval ran; ``embed`` on a full
disk; inputs that gave a traceback (a result.json nested very deep, a binary manifest or
dataset list, ``embed`` with a module that does not exist, is not a HEAR module or refuses an
option); the one error path of every command (exit 2 usage, 3 data, ``--debug`` for the
traceback); misleading outcomes (``list`` printing problems, a non-finite float setting, the
plugin called without a model); and three bugs that were planted and passed the old tests
(the study's aggregate grouping, the Speech Commands 12-class test list).
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import hear_slicer
from eval_suites.__main__ import main as eval_main
from eval_suites.core.embeddings import ensure_embeddings, load_hear_model, read_split
from eval_suites.core.manifest import ManifestError, ModelSpec, load_manifest
from eval_suites.core.protocols.heareval import _link_embeddings, store_outputs
from eval_suites.core.results import CorruptResult, CorruptResultWarning, cell_dir, load_cell
from eval_suites.lape.base import LayoutError
from eval_suites.lape.speech_commands import NOISE_DIR, TEST_FOLDERS, WORDS_V1, WORDS_V2, SpeechCommands
from eval_suites.synthetic.demo_tasks import build_keyword_task
from studies.mini_lape import aggregate
from test_hostile_inputs import file_size_limit  # the same full-disk simulation

torch.set_num_threads(1)
TESTS = Path(__file__).resolve().parent
TOY = ModelSpec(name="toy", module="hear_toy_module")
MARKER = Path("/tmp/hear_slicer_hostile_eval_pickle_ran")


@pytest.fixture(scope="module")
def task_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile_eval_tasks")
    build_keyword_task(root, words=("yes", "no"), clips_per_word_per_split=4)  # 8 x 256 B rows a split
    return root


def _task(root: Path) -> Path:
    return next(p for p in root.iterdir() if (p / "task_metadata.json").is_file())


@pytest.fixture()
def toy_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def _one_error_line(err: str, *fragments: str) -> None:
    """`err` is one 'error:' line holding every fragment, and no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


# ----------------------------------------------------------------------------- the shared cache
def test_store_outputs_reads_the_checked_labels_copy_never_the_cache(task_root, tmp_path, toy_on_path):
    """Feeds store_outputs (run after heareval's prediction runner) a shared cache whose test
    labels pickle was replaced, after the link step checked it, by one that runs `touch`;
    expects the command never run and the outputs built from the checked copy."""
    MARKER.unlink(missing_ok=True)
    cache = ensure_embeddings(TOY, _task(task_root), tmp_path / "cache", lambda: load_hear_model(TOY, "cpu"),
                              progress=False)
    work = tmp_path / "work" / cache.name
    _link_embeddings(cache, work)  # checks the cache's pickles and writes fresh copies
    test = read_split(cache, "test")
    vocab = pd.read_csv(cache / "labelvocabulary.csv")["label"].tolist()
    targets = np.array([[float(lbl[0] == v) for v in vocab] for lbl in test.labels])  # (M, C)
    with open(work / "test.predictions.pkl", "wb") as fh:  # what heareval's runner writes
        pickle.dump({"target": targets, "prediction": targets}, fh)
    (cache / "test.target-labels.pkl").write_bytes(pickle.dumps([["yes"], _Payload()]))
    metadata = json.loads((cache / "task_metadata.json").read_text())
    try:
        store_outputs(work, cache, metadata, tmp_path / "outputs")
    finally:
        assert not MARKER.exists(), "the cache's labels pickle was unpickled: its payload ran"
    assert (tmp_path / "outputs" / "test_predictions.npz").is_file()


# ----------------------------------------------------------------------------- embed
def test_embed_on_a_full_disk_is_exit_3_naming_the_file_never_sigbus(task_root, tmp_path, toy_on_path,
                                                                    monkeypatch, capsys):
    """Feeds `eval_suites embed` a disk that fills (RLIMIT_FSIZE below a split's embeddings
    file); expects exit 3, one error line naming the file that could not be written, the
    unfinished folder removed, no np.memmap opened for writing (the memmap writer dies with
    SIGBUS on a full disk), and the same command succeeding once there is room."""
    real_memmap = np.memmap

    def no_write_memmap(*args, mode="r+", **kw):
        assert mode == "r", f"np.memmap opened for writing (mode {mode!r})"
        return real_memmap(*args, mode=mode, **kw)
    monkeypatch.setattr(np, "memmap", no_write_memmap)
    out = tmp_path / "emb"
    argv = ["embed", "hear_toy_module", "--tasks-dir", str(task_root), "--embeddings-dir", str(out),
            "--device", "cpu", "--no-progress"]
    with file_size_limit(1500):  # above every file written before train.embeddings.npy (2 KB)
        code = eval_main(argv)
    err = capsys.readouterr().err
    assert code == 3, err
    _one_error_line(err, "cannot write ", ".partial/train.embeddings.npy")
    assert not list(out.rglob("*.partial"))
    assert eval_main(argv) == 0
    task = out / "hear_toy_module" / _task(task_root).name
    rows, dim = json.loads((task / "test.embedding-dimensions.json").read_text())
    assert (task / "test.embeddings.npy").stat().st_size == rows * dim * 4


@pytest.mark.parametrize("module, options, fragments", [
    ("no_such_hear_module", "{}", ["'no_such_hear_module'", "cannot be imported"]),
    ("json", "{}", ["'json'", "is not a HEAR 2021 module"]),
    ("hear_toy_module", '{"bogus": 1}', ["hear_toy_module.load_model refused the options", "bogus"]),
    ("hear_toy_module", "[" * 100000, ["--model-options", "is not JSON"]),
    (".hear_toy_module", "{}", ["MODULE '.hear_toy_module'", "not relative"]),  # importlib's TypeError before
    ("../outside", "{}", ["MODULE '../outside'", "dotted identifiers"]),  # would name a folder outside --embeddings-dir
])
def test_embed_with_a_module_that_cannot_serve_is_exit_2_in_one_line(module, options, fragments, task_root,
                                                                       tmp_path, toy_on_path, capsys):
    """Feeds `embed` a module that does not exist, one that is not a HEAR module, an option
    load_model does not take, and --model-options nested too deeply for JSON; expects exit 2
    and one error line naming the module or option (a traceback before)."""
    argv = ["embed", module, "--tasks-dir", str(task_root), "--embeddings-dir", str(tmp_path / "e"),
            "--model-options", options, "--device", "cpu", "--no-progress"]
    assert eval_main(argv) == 2
    _one_error_line(capsys.readouterr().err, *fragments)


def test_embed_with_an_option_out_of_range_is_exit_2_naming_it(task_root, tmp_path, capsys):
    """Feeds `embed hear_slicer` the option timestamp_hop_ms=0 (load_model's ValueError);
    expects exit 2 and one error line naming the option (a traceback before)."""
    argv = ["embed", "hear_slicer", "--tasks-dir", str(task_root), "--embeddings-dir", str(tmp_path / "e"),
            "--model-options", '{"timestamp_hop_ms": 0}', "--device", "cpu", "--no-progress"]
    assert eval_main(argv) == 2
    _one_error_line(capsys.readouterr().err, "hear_slicer.load_model refused the options", "timestamp_hop_ms")


def _task_copy(task_root: Path, dest: Path) -> Path:
    """A copy of the test task, so that one file can be replaced."""
    src = _task(task_root)
    shutil.copytree(src, dest / src.name)
    return dest / src.name


@pytest.mark.parametrize("content", ["not audio", "loud", "a link out of the task", "stereo"])
def test_embed_of_audio_the_module_cannot_take_is_exit_3_naming_it(content, task_root, tmp_path, capsys):
    """Feeds `embed hear_slicer` a task with one test clip that is not audio, whose samples are
    so loud (1e25) that the plugin refuses them (non-finite embeddings), or that is a symlink
    to a file outside the task; expects exit 3 and one error line naming the file, or the
    task, split and clips (a traceback before)."""
    task = _task_copy(task_root, tmp_path / "tasks")
    clip = sorted((task / "16000" / "test").iterdir())[0]
    clip.unlink()
    if content == "loud":
        sf.write(clip, np.full(16000, 1e25, dtype=np.float32), 16000, subtype="FLOAT", format="WAV")
    elif content == "not audio":
        clip.write_bytes(b"RIFF, but not really")
    elif content == "stereo":  # the same length as the others: not a "different lengths" problem
        sf.write(clip, np.zeros((sf.info(str(next((task / "16000" / "test").iterdir()))).frames, 2), np.float32),
                 16000, subtype="PCM_16", format="WAV")
    else:
        clip.symlink_to(next((_task(task_root) / "16000" / "test").iterdir()))
    argv = ["embed", "hear_slicer", "--tasks-dir", str(tmp_path / "tasks"), "--embeddings-dir", str(tmp_path / "e"),
            "--device", "cpu", "--no-progress"]
    assert eval_main(argv) == 3
    expected = {"not audio": [f"{clip}: not readable audio"],
                "loud": [f"task {task.name} split test", "give non-finite embeddings"],
                "a link out of the task": [f"clip {clip.name!r} of split 'test' resolves to", "outside"],
                "stereo": [f"{clip}: 2 channels", "must be mono"]}[content]
    _one_error_line(capsys.readouterr().err, *expected)


def test_debug_shows_the_traceback(task_root, tmp_path, toy_on_path):
    """Feeds `--debug embed` a module that does not exist; expects the error raised (its
    traceback shown) instead of the one line."""
    from eval_suites.core.embeddings import ModelLoadError

    with pytest.raises(ModelLoadError, match="no_such_hear_module"):
        eval_main(["--debug", "embed", "no_such_hear_module", "--tasks-dir", str(task_root),
                   "--embeddings-dir", str(tmp_path / "e"), "--device", "cpu"])


def test_embed_of_a_task_with_binary_metadata_is_exit_3_naming_it(task_root, tmp_path, toy_on_path, capsys):
    """Feeds `embed` a task folder whose task_metadata.json is binary; expects exit 3 and an
    error naming the task folder and the file (a UnicodeDecodeError traceback before)."""
    task = _task_copy(task_root, tmp_path / "tasks")
    (task / "task_metadata.json").unlink()
    (task / "task_metadata.json").write_bytes(b"\xff\xfe\x00binary\x81")
    code = eval_main(["embed", "hear_toy_module", "--tasks-dir", str(tmp_path / "tasks"), "--embeddings-dir",
                      str(tmp_path / "e"), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" not in err, err
    assert str(task) in err and "task_metadata.json: not valid JSON" in err


# ----------------------------------------------------------------------------- manifests and results
def test_binary_manifest_is_exit_2_naming_the_file(tmp_path, capsys):
    """Feeds `list` and `run` a manifest that is binary; expects exit 2 and an error naming the
    file and 'not UTF-8' (a UnicodeDecodeError traceback before)."""
    m = tmp_path / "m.yaml"
    m.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    for command in (["list", str(m)], ["run", str(m), "--out", str(tmp_path / "out"), "--no-progress"]):
        assert eval_main(command) == 2
        err = capsys.readouterr().err
        assert str(m) in err and "not UTF-8 text" in err and "Traceback" not in err, err


@pytest.mark.parametrize("protocols, key", [
    ("linear: {lr: .inf}", "'lr'"), ("linear: {lr: .nan}", "'lr'"), ("linear: {lr: 1.0e+6}", "'lr'"),
    ("heareval: {timeout_s: .inf}", "'timeout_s'"), ("heareval: {param_grid: {lr: [.inf]}}", "'param_grid.lr'"),
])
def test_float_settings_must_be_finite_and_in_range(protocols, key, tmp_path):
    """Feeds manifests whose float settings are infinite, NaN or absurd; expects ManifestError
    naming the setting (`lr: .inf` was accepted)."""
    m = tmp_path / "m.yaml"
    m.write_text(f"models: [{{name: a, module: hear_slicer}}]\ntasks: [a]\nprotocols: {{{protocols}}}\n")
    with pytest.raises(ManifestError, match=f"setting {key}"):
        load_manifest(m)


def test_list_exits_non_zero_when_it_prints_problems(task_root, tmp_path, capsys):
    """Feeds `list` a manifest whose module does not exist and whose task folder is missing;
    expects both printed as problems and exit 2 (it exited 0), and exit 0 for a usable one."""
    m = tmp_path / "m.yaml"
    m.write_text(f"tasks_root: {task_root}\nmodels: [{{name: a, module: no_such_hear_module}}]\n"
                 f"tasks: [nowhere, {_task(task_root).name}]\n")
    assert eval_main(["list", str(m)]) == 2
    out = capsys.readouterr().out
    assert "problem: model 'a': module 'no_such_hear_module'" in out and "problem: task 'nowhere'" in out
    m.write_text(f"tasks_root: {task_root}\nmodels: [{{name: a, module: hear_slicer}}]\n"
                 f"tasks: [{_task(task_root).name}]\n")
    assert eval_main(["list", str(m)]) == 0
    assert "problem:" not in capsys.readouterr().out


def test_a_relative_module_name_is_refused_where_it_enters(tmp_path):
    """Feeds a relative module name ('.hear_toy_module') to a manifest and to load_hear_model;
    expects the manifest key named, and a ModelLoadError (importlib's TypeError before)."""
    from eval_suites.core.embeddings import ModelLoadError

    m = tmp_path / "m.yaml"
    m.write_text("models: [{name: a, module: .hear_toy_module}]\ntasks: [a]\n")
    with pytest.raises(ManifestError, match=r"key 'models\[0\].module': .*not relative.*'.hear_toy_module'"):
        load_manifest(m)
    with pytest.raises(ModelLoadError, match="model 'a'.*not relative"):
        load_hear_model(ModelSpec(name="a", module=".hear_toy_module"), device="cpu")


def test_list_names_the_model_options_that_run_refuses(task_root, tmp_path, toy_on_path, capsys):
    """Feeds `list` a manifest whose models take options their load_model refuses (a key the toy
    module does not take, hear_slicer's timestamp_hop_ms=0); expects each printed as a problem,
    with the message that `run` records in every cell of that model, and exit 2 (`list` printed
    no problem and exited 0, then `run` failed every cell)."""
    m = tmp_path / "m.yaml"
    m.write_text(f"tasks_root: {task_root}\nmodels:\n"
                 "  - {name: toy, module: hear_toy_module, options: {bogus: 1}}\n"
                 "  - {name: hop, module: hear_slicer, options: {timestamp_hop_ms: 0}}\n"
                 "  - {name: fine, module: hear_toy_module, options: {n_mels: 16}}\n"
                 f"tasks: [{_task(task_root).name}]\nprotocols: {{knn: {{}}}}\n")
    assert eval_main(["list", str(m)]) == 2
    problems = [line for line in capsys.readouterr().out.splitlines() if line.startswith("problem:")]
    assert len(problems) == 2, problems  # the model whose options load is no problem
    out = tmp_path / "out"
    assert eval_main(["run", str(m), "--models", "toy", "hop", "--out", str(out), "--no-progress"]) == 1
    for model, option in (("toy", "bogus"), ("hop", "timestamp_hop_ms")):
        error = load_cell(cell_dir(out, model, _task(task_root).name, "knn") / "result.json").error
        message = error.removeprefix("ModelLoadError: ")
        assert option in message and f"problem: model {model!r}: {message}" in problems, (error, problems)


def test_result_json_nested_too_deeply_is_a_corrupt_result(tmp_path):
    """Feeds `report` a result.json nested 100000 levels deep (valid JSON); expects it named
    as a corrupt cell result and left out with a warning, exit 0 (RecursionError before)."""
    out = tmp_path / "out"
    path = cell_dir(out, "m", "t", "linear") / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(CorruptResult, match="RecursionError"):
        load_cell(path)
    with pytest.warns(CorruptResultWarning, match=str(path)):
        assert eval_main(["report", str(out)]) == 0


# ----------------------------------------------------------------------------- LAPE sources
def _speech_commands(root: Path, version: int, testing_list: bytes | None = None) -> dict[str, str]:
    """A minimal speech_commands_v0.0{version} layout: one empty clip per word folder (the
    converter lists clips by name), lists, a 3 s noise recording and the 12-folder test
    archive. Returns {clip path: list it is in ('valid', 'test' or 'train')}."""
    words = WORDS_V1 if version == 1 else WORDS_V2
    where = {}
    for i, word in enumerate(words):
        for n in range(3):
            rel = f"{word}/{i:08x}_nohash_{n}.wav"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).touch()
            where[rel] = ("train", "valid", "test")[n]
    (root / "validation_list.txt").write_text("\n".join(r for r, s in where.items() if s == "valid") + "\n")
    (root / "testing_list.txt").write_bytes(
        testing_list if testing_list is not None
        else ("\n".join(r for r, s in where.items() if s == "test") + "\n").encode())
    (root / NOISE_DIR).mkdir()
    sf.write(root / NOISE_DIR / "white_noise.wav", np.zeros(3 * 16000, dtype=np.float32), 16000)
    for folder in TEST_FOLDERS:
        archive = root / f"speech_commands_test_set_v0.0{version}" / folder
        archive.mkdir(parents=True)
        (archive / "a_nohash_0.wav").touch()
    return where


@pytest.mark.parametrize("version, classes", [(1, 12), (2, 12), (2, 35)])
def test_speech_commands_testing_list_is_kept_out_of_train_and_valid(version, classes, tmp_path):
    """Feeds the Speech Commands converter a layout where each word has one clip in neither
    list, one in validation_list.txt and one in testing_list.txt; expects (README, LAPE
    table) for 12 classes: testing_list.txt clips in no split (the test split is the test
    archive, train and valid never hold them), for 35 classes: they are the test split."""
    where = _speech_commands(tmp_path, version)
    clips = SpeechCommands(dataset_version=version, classes=classes).list_clips(tmp_path)
    split_of = {str(c.source.relative_to(tmp_path)): c.split for c in clips if c.start is None}  # not _silence_
    for rel, listed in where.items():
        if listed == "test" and classes == 12:
            assert rel not in split_of, rel
        else:
            assert split_of[rel] == listed, rel
    tests = [c for c in clips if c.split == "test"]
    if classes == 12:
        assert len(tests) == len(TEST_FOLDERS)
        assert all(c.source.parent.parent.name == f"speech_commands_test_set_v0.0{version}" for c in tests)
    else:
        assert len(tests) == len(WORDS_V2)


def test_binary_dataset_list_is_a_layout_error_naming_it(tmp_path, capsys):
    """Feeds `prepare lape` a Speech Commands root whose testing_list.txt is binary; expects
    exit 2 and an error naming the file and 'not UTF-8' (a UnicodeDecodeError traceback before)."""
    _speech_commands(tmp_path / "sc", 1, testing_list=b"\xff\xfe\x00\x81yes/x.wav\n")
    with pytest.raises(LayoutError, match="testing_list.txt is not UTF-8 text"):
        SpeechCommands(dataset_version=1, classes=12).list_clips(tmp_path / "sc")
    assert eval_main(["prepare", "lape", "--task", "sc_v1", "--source", str(tmp_path / "sc"),
                      "--out", str(tmp_path / "tasks")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'sc' / 'testing_list.txt'} is not UTF-8 text" in err and "Traceback" not in err, err


# ----------------------------------------------------------------------------- plugin
@pytest.mark.parametrize("fn", [hear_slicer.get_scene_embeddings, hear_slicer.get_timestamp_embeddings])
def test_plugin_called_without_a_model_is_a_type_error_naming_the_argument(fn):
    """Feeds the HEAR functions model=None; expects TypeError naming the argument 'model' and
    what to pass (an AttributeError on NoneType before)."""
    with pytest.raises(TypeError, match=r"argument 'model' must be the model that load_model\(\) returns.*NoneType"):
        fn(torch.zeros(1, 16000), None)


# ----------------------------------------------------------------------------- planted: the study's aggregate
def test_study_mean_row_spreads_over_every_run_and_probe_seed():
    """Two pretraining runs of one group ('g' and 'g_seed1') x probe seeds 0, 1 x two tasks,
    scores chosen so that each (run, probe seed) has its own mean; expects the group's mean
    row to have count 4 and the std of those 4 means (grouping by (group, seed) only, a
    planted bug, averages the runs together: count 2, a smaller std)."""
    values = {("g", 0): (0.50, 0.70), ("g", 1): (0.52, 0.74), ("g_seed1", 0): (0.80, 0.90),
              ("g_seed1", 1): (0.60, 0.66)}
    rows = [dict(group="g", model=model, task=task, seed=seed, metric="top1_acc", value=v, status="ok")
            for (model, seed), pair in values.items() for task, v in zip(("t1", "t2"), pair)]
    table = aggregate(pd.DataFrame(rows), ["g"]).set_index(["model", "task"])
    means = [np.mean(pair) for pair in values.values()]  # one per (run, probe seed)
    mean_row = table.loc[("g", "mean")]
    assert mean_row["count"] == 4 and mean_row["runs"] == 2
    assert mean_row["mean"] == pytest.approx(np.mean(means))
    assert mean_row["std"] == pytest.approx(np.std(means, ddof=1))
    assert table.loc[("g", "t1"), "count"] == 4


def test_study_records_nested_too_deeply_are_exit_3_naming_the_file(tmp_path, capsys):
    """Feeds `studies.mini_lape --report` a runs.json nested 100000 levels deep; expects exit 3
    and one error line naming the file (a RecursionError traceback before)."""
    from studies.mini_lape import main as study_main

    out = tmp_path / "out"
    out.mkdir()
    (out / "runs.json").write_text("[" * 100000 + "]" * 100000)
    assert study_main(["--preset", "small", "--report", "--root", str(tmp_path / "data"), "--runs",
                       str(tmp_path / "runs"), "--out", str(out), "--no-progress"]) == 3
    _one_error_line(capsys.readouterr().err, str(out / "runs.json"), "RecursionError")


def test_report_on_a_full_disk_is_exit_3_naming_the_file(tmp_path, capsys):
    """Feeds `report` a disk that fills at the first output (RLIMIT_FSIZE of 10 bytes); expects
    exit 3 and one error line naming results.csv (the OS's message names no file)."""
    out = tmp_path / "out"
    out.mkdir()
    with file_size_limit(10):
        code = eval_main(["report", str(out)])
    assert code == 3
    _one_error_line(capsys.readouterr().err, f"cannot write {out / 'results.csv'}")


def test_task_writer_on_a_full_disk_names_the_file(tmp_path):
    """Feeds the task writer of `prepare lape` a disk that fills at the first clip (RLIMIT_FSIZE
    below one second of 16-bit audio); expects an OSError naming the clip's file (libsndfile's
    own error named none), and no half-written clip under its final name."""
    from eval_suites.hear_format.task import TaskMetadata, TaskWriter

    meta = TaskMetadata(task_name="full", version="v1", embedding_type="scene", prediction_type="multiclass",
                        split_mode="trainvaltest", sample_duration=1.0, evaluation=["top1_acc"],
                        splits=["train", "valid", "test"])
    writer = TaskWriter(tmp_path / "full-v1-full", meta)
    with file_size_limit(20000), pytest.raises(OSError, match=r"cannot write .*16000/train/a\.wav: "):
        writer.add_clip("train", "a.wav", np.zeros(16000, dtype=np.float32), 16000, ["x"])
    assert not (tmp_path / "full-v1-full" / "16000" / "train" / "a.wav").exists()
    assert not list((tmp_path / "full-v1-full" / "16000" / "train").glob(".*.tmp"))  # nor a temporary one


def test_learning_curve_records_nested_too_deeply_are_exit_3_naming_the_file(tmp_path, capsys):
    """Feeds `studies.learning_curves --report` a points file nested 100000 levels deep;
    expects exit 3 and one error line naming the file (a RecursionError traceback before)."""
    from studies.learning_curves import POINTS, main as curves_main

    out = tmp_path / "out"
    out.mkdir()
    (out / POINTS).write_text("[" * 100000 + "]" * 100000)
    assert curves_main(["--preset", "tiny", "--report", "--root", str(tmp_path / "data"), "--runs",
                        str(tmp_path / "runs"), "--out", str(out), "--no-progress"]) == 3
    _one_error_line(capsys.readouterr().err, str(out / POINTS), "RecursionError")
