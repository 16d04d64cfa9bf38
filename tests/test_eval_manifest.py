"""Manifest loading: structure errors name the key and what was expected; safe YAML;
tasks root resolution; the shipped HEAR 2021 manifest."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval_suites.core.manifest import ManifestError, check_inputs, load_manifest
from eval_suites.core.protocols.heareval import HearevalConfig
from eval_suites.core.protocols.linear import LinearConfig

SHIPPED = Path(__file__).resolve().parents[1] / "eval_suites" / "manifests"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "m.yaml"
    p.write_text(text)
    return p


GOOD = """
suite: demo
tasks_root: tasks
models:
  - {name: toy, module: hear_toy_module, options: {n_mels: 16}}
  - {name: slicer, module: hear_slicer, checkpoint: ck/a.pt}
tasks:
  - {path: kw-v1-full, name: kw, protocols: [linear]}
  - path: ev-v1-full
    suite: other
protocols:
  linear: {epochs: 3}
  heareval: {grid: faster, grid_points: 1}
"""


def test_good_manifest_resolves_paths_and_defaults(tmp_path):
    m = load_manifest(write(tmp_path, GOOD))
    assert [x.name for x in m.models] == ["toy", "slicer"]
    assert m.models[0].options == {"n_mels": 16}
    assert m.models[1].checkpoint == (tmp_path / "ck" / "a.pt").resolve()
    assert m.tasks_root == (tmp_path / "tasks").resolve()
    kw, ev = m.tasks
    assert kw.path == m.tasks_root / "kw-v1-full" and kw.protocols == ("linear",)
    assert ev.name == "ev-v1-full" and ev.suite == "other"
    assert ev.protocols == ("linear", "heareval")  # every configured protocol
    assert m.linear == LinearConfig(epochs=3)
    assert m.heareval == HearevalConfig(grid="faster", grid_points=1)
    assert [t.name for t in m.select(tasks=["kw"]).tasks] == ["kw"]
    with pytest.raises(ManifestError, match="no task named 'nope'"):
        m.select(tasks=["nope"])


@pytest.mark.parametrize("text, expected", [
    ("models: []\ntasks: [a]\n", "key 'models': expected a non-empty list"),
    ("models: [{name: a}]\ntasks: [a]\n", "key 'models[0].module': expected an importable module name"),
    ("models: [{name: a, module: m, colour: red}]\ntasks: [a]\n",
     "models[0]: unknown key 'colour'"),
    ("models: [{name: 'a b', module: m}]\ntasks: [a]\n", "key 'models[0].name': expected a name"),
    ("models: [{name: a, module: m}, {name: a, module: n}]\ntasks: [a]\n",
     "name 'a' is used twice"),
    ("models: [{name: a, module: m}]\ntasks: {a: 1}\n", "key 'tasks': expected a non-empty list"),
    ("models: [{name: a, module: m}]\ntasks: [{path: a, protocols: [knn]}]\n",
     "protocol 'knn' is not configured"),
    ("models: [{name: a, module: m}]\ntasks: [a]\nprotocols: {svm: {}}\n",
     "unknown protocol 'svm'"),
    ("models: [{name: a, module: m}]\ntasks: [a]\nprotocols: {linear: {lr: -1}}\n",
     "setting 'lr': expected a number > 0"),
    ("models: [{name: a, module: m}]\ntasks: [a]\nprotocols: {linear: {epoch: 3}}\n",
     "key 'protocols.linear.epoch': unknown setting"),
    ("models: [{name: a, module: m}]\ntasks: [a]\nprotocols: {heareval: {grid: huge}}\n",
     "setting 'grid': expected one of ('default', 'fast', 'faster')"),
    ("models: [{name: a, module: m}]\ntasks: [a]\nprotocols: {heareval: {param_grid: {optim: [sgd]}}}\n",
     "setting 'param_grid.optim': not a heareval grid entry"),
    ("models: [{name: a, module: m}]\ntasks: [a]\nprotocols: {heareval: {param_grid: {lr: [-0.1]}}}\n",
     "setting 'param_grid.lr': expected a non-empty list of numbers >= 0"),
    ("models: [{name: a, module: m, options: [1]}]\ntasks: [a]\n",
     "key 'models[0].options': expected a mapping"),
    ("models: [{name: a, module: m}]\ntasks: [{path: a, settings: [1]}]\n",
     "key 'tasks[0].settings': expected a mapping of protocol name -> settings"),
    ("models: [{name: a, module: m}]\ntasks: [{path: a, settings: {knn: {ks: [1]}}}]\n",
     "key 'tasks[0].settings': protocol 'knn' is not configured"),
    ("models: [{name: a, module: m}]\ntasks: [{path: a, protocols: [linear], settings: {heareval: {grid: fast}}}]\n"
     "protocols: {linear: {}, heareval: {}}\n",
     "key 'tasks[0].settings.heareval': the task is not scored with 'heareval'"),
    ("models: [{name: a, module: m}]\ntasks: [{path: a, settings: {linear: {}}}]\n",
     "key 'tasks[0].settings.linear': expected a non-empty mapping of linear settings, got {}"),
    ("models: [{name: a, module: m}]\ntasks: [{path: a, settings: {linear: {epoch: 3}}}]\n",
     "key 'tasks[0].settings.linear.epoch': unknown setting; expected one of"),
    ("models: [{name: a, module: m}]\ntasks: [{path: a, settings: {linear: {lr: .nan}}}]\n",
     "key 'tasks[0].settings.linear': setting 'lr'"),
    ("models: [{name: a, module: m}]\ntasks: [{path: a, settings: {heareval: {param_grid: "
     "{check_val_every_n_epoch: [0]}}}}]\nprotocols: {heareval: {}}\n",
     "key 'tasks[0].settings.heareval': setting 'param_grid.check_val_every_n_epoch': expected a list of "
     "integers >= 1, got [0]"),
    ("models: [{name: a, module: m}]\ntasks: [a]\nprotocols: {heareval: {param_grid: {max_epochs: [2.5]}}}\n",
     "setting 'param_grid.max_epochs': expected a list of integers >= 1, got [2.5]"),
    ("- just a list\n", "expected a mapping with keys 'models' and 'tasks'"),
    ("models: [\n", "not valid YAML"),
])
def test_structure_errors_name_key_and_expectation(tmp_path, text, expected):
    with pytest.raises(ManifestError) as e:
        load_manifest(write(tmp_path, text))
    assert expected in str(e.value)


def test_a_task_s_own_settings_apply_to_that_task_only(tmp_path):
    """`settings` under a task replace the top-level settings of its protocols for that task;
    heareval's param_grid is updated entry by entry; the other tasks keep the top level."""
    text = ("models: [{name: a, module: m}]\n"
            "tasks:\n"
            "  - {path: kw}\n"
            "  - {path: ev, settings: {heareval: {param_grid: {check_val_every_n_epoch: [10]}, grid_points: 2},"
            " linear: {epochs: 7}}}\n"
            "protocols:\n  linear: {epochs: 3}\n"
            "  heareval: {grid: faster, grid_points: 1, param_grid: {lr: [0.001], check_val_every_n_epoch: [1]}}\n")
    m = load_manifest(write(tmp_path, text))
    kw, ev = m.tasks
    assert kw.settings == {} and m.protocol_config("heareval", kw) == m.heareval
    assert m.protocol_config("linear", kw) == LinearConfig(epochs=3)
    assert m.protocol_config("linear", ev) == LinearConfig(epochs=7)
    assert m.protocol_config("heareval", ev) == HearevalConfig(
        grid="faster", grid_points=2, param_grid={"lr": [0.001], "check_val_every_n_epoch": [10]})
    assert m.protocol_config("heareval") == m.heareval  # no task: the top level


def test_shipped_demo_manifest_validates_the_events_task_every_5_epochs():
    """The demo's heareval MLP on the events task validates (sed_eval) every 5 epochs (heareval
    validates DCASE 2016 task 2 every 10); every other task every epoch. Patience counts
    validations, so every task stops after the same 10 epochs without improvement."""
    m = load_manifest(SHIPPED / "demo.yaml", tasks_root="/nonexistent")
    grids = {t.name: m.protocol_config("heareval", t).param_grid for t in m.tasks}
    every = {name: g["check_val_every_n_epoch"] for name, g in grids.items()}
    assert every.pop("events") == [5] and set(map(tuple, every.values())) == {(1,)}
    epochs_without_improvement = {g["check_val_every_n_epoch"][0] * g["patience"][0] for g in grids.values()}
    assert epochs_without_improvement == {10}
    assert {tuple(g["max_epochs"]) for g in grids.values()} == {(100,)}


def test_all_problems_listed_at_once(tmp_path):
    text = "models: [{name: a}]\ntasks: [{name: x}]\nprotocols: {linear: {epochs: 0}}\n"
    with pytest.raises(ManifestError) as e:
        load_manifest(write(tmp_path, text))
    assert len(e.value.problems) == 3, e.value.problems


def test_yaml_is_loaded_safely(tmp_path):
    marker = tmp_path / "pwned"
    text = (f"models: !!python/object/apply:os.system ['touch {marker}']\n"
            "tasks: [a]\n")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(write(tmp_path, text))
    assert not marker.exists()


def test_tasks_root_precedence(tmp_path, monkeypatch):
    text = "tasks_root_env: MY_TASKS\nmodels: [{name: a, module: m}]\ntasks: [t1]\n"
    p = write(tmp_path, text)
    monkeypatch.delenv("MY_TASKS", raising=False)
    with pytest.raises(ManifestError, match="pass --tasks-root DIR or set the environment variable MY_TASKS"):
        load_manifest(p)
    monkeypatch.setenv("MY_TASKS", str(tmp_path / "env"))
    assert load_manifest(p).tasks[0].path == (tmp_path / "env" / "t1").resolve()
    cli = load_manifest(p, tasks_root=tmp_path / "cli")
    assert cli.tasks[0].path == (tmp_path / "cli" / "t1").resolve()


def test_check_inputs_reports_missing_module_checkpoint_and_task(tmp_path):
    m = load_manifest(write(tmp_path, GOOD))
    problems = "\n".join(check_inputs(m))
    assert "module 'hear_toy_module'" not in problems  # on sys.path in the tests
    assert "checkpoint" in problems and "a.pt does not exist" in problems
    assert "task 'kw'" in problems and "task 'ev-v1-full'" in problems
    bad = load_manifest(write(tmp_path, "models: [{name: a, module: no_such_hear_module}]\ntasks: [x]\n"))
    assert any("module 'no_such_hear_module' cannot be imported" in q for q in check_inputs(bad))


def test_task_with_escaping_clip_name_is_refused_before_work(tmp_path):
    task = tmp_path / "tasks" / "evil-v1-full"
    (task / "16000" / "train").mkdir(parents=True)
    meta = {"task_name": "evil", "embedding_type": "scene", "prediction_type": "multiclass",
            "split_mode": "trainvaltest", "sample_duration": None, "evaluation": ["top1_acc"],
            "splits": ["train", "valid", "test"]}
    (task / "task_metadata.json").write_text(json.dumps(meta))
    (task / "labelvocabulary.csv").write_text("idx,label\n0,a\n")
    for split in ("train", "valid", "test"):
        (task / f"{split}.json").write_text(json.dumps({"../../../secret.wav": ["a"]}))
    m = load_manifest(write(tmp_path, "tasks_root: tasks\nmodels: [{name: a, module: hear_toy_module}]\n"
                                      "tasks: [evil-v1-full]\n"))
    problems = check_inputs(m)
    assert len(problems) == 1 and "../../../secret.wav" in problems[0]


def test_shipped_hear2021_manifest(monkeypatch, tmp_path):
    monkeypatch.setenv("HEAR_TASKS_ROOT", str(tmp_path))
    m = load_manifest(SHIPPED / "hear2021.yaml")
    folders = [t.path.name for t in m.tasks]
    assert all(t.path.parent == tmp_path.resolve() for t in m.tasks)
    assert len(folders) == len(set(folders)) == 20  # 19 tasks, Beehive in two folds
    families = {f.split("_fold")[0] for f in folders}
    assert len(families) == 19
    for f in ("esc50-v2.0.0-full", "dcase2016_task2-hear2021-full", "speech_commands-v0.0.2-5h",
              "nsynth_pitch-v2.2.3-50h", "vox_lingua_top10-hear2021-full", "maestro-v3.0.0-5h"):
        assert f in folders
    assert {t.suite for t in m.tasks} == {"hear2021"}
