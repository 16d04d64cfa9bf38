"""Every LAPE converter on a miniature copy of its dataset's native layout.

Each ``build_*`` function writes a tiny copy of a dataset as its authors distribute it
(folder names, list/CSV/JSON metadata, audio format, sample rate and channel count as
distributed) from real speech (espeak-ng, flite) and real instruments (fluidsynth), and
returns the ground truth it planted: ``{clip name: (split, label)}``. The tests convert
it and compare the HEAR task folder (validated with ``validate_task``) with that truth.

Then both protocols score every converted task on embeddings of the minimal HEAR module
``tests/hear_toy_module.py`` written by the suite's embedding writer: the linear protocol
(fast) and heareval's prediction runner (marked slow: about 45 s per task, 3 min for
the 10 folds of US8K; run with ``-m slow``).
"""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from eval_suites.core.clip_outputs import load_outputs
from eval_suites.core.embeddings import ensure_embeddings, load_hear_model
from eval_suites.hear_format.task import TaskWriter, load_task, validate_task
from eval_suites.lape.base import LayoutError, read_audio
from eval_suites.lape.speech_commands import COMMANDS, TEST_FOLDERS, WORDS_V1, WORDS_V2
from eval_suites.lape.tasks import TASKS, VARIANTS, converter
from eval_suites.core.manifest import ModelSpec
from eval_suites.core.protocols.heareval import HearevalConfig, run_heareval
from eval_suites.core.protocols.linear import LinearConfig, run_linear
from eval_suites.synthetic.synth import Note, espeak, fluidsynth_render, noise, resample

pytestmark = pytest.mark.slow  # make test-fast: every test shares a 30 s conversion of all tasks; test_lape_layouts.py stays fast

Truth = dict[str, tuple[str, str]]  # clip name -> (split, label)


# --------------------------------------------------------------------------- audio


@functools.lru_cache(maxsize=None)
def say(text: str, voice: str = "en", sr: int = 16000, speed: int = 175) -> np.ndarray:
    """Real speech from espeak-ng (cached: the same words recur across builders)."""
    return espeak(text, voice=voice, speed=speed, sample_rate=sr)


@functools.lru_cache(maxsize=None)
def play(program: int, pitch: int, duration: float, sr: int, drums: bool = False) -> np.ndarray:
    """A real General MIDI instrument note (fluidsynth + FluidR3_GM)."""
    notes = [Note(program, pitch, 100, 0.0, duration * 0.8, channel=9 if drums else 0)]
    return fluidsynth_render(notes, duration, sample_rate=sr)


def write(path: Path, x: np.ndarray, sr: int, subtype: str = "PCM_16", fmt: str = "WAV",
          channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.clip(np.asarray(x, dtype=np.float32), -1, 1)
    if channels == 2:  # a slightly different right channel, as a real stereo recording
        x = np.stack([x, 0.8 * x], axis=1)
    sf.write(str(path), x, sr, subtype=subtype, format=fmt)


# --------------------------------------------------------------------------- builders


def build_speech_commands(root: Path, version: int) -> dict[str, tuple[str, str]]:
    """speech_commands_v0.0{1,2}: word folders, lists, _background_noise_, and the official
    test archive speech_commands_test_set_v0.0{1,2} (12 folders) extracted into the root.

    Returns {relative path: split} for the word files and the test archive's files."""
    words = WORDS_V1 if version == 1 else WORDS_V2
    voices = ["en", "en-us+f3", "en+m3"]
    planted: dict[str, str] = {}
    valid, test = [], []
    for w in words:
        n = 3 if w in COMMANDS else 1
        for i in range(n):
            rel = f"{w}/{i:08x}_nohash_0.wav"
            write(root / rel, say(w, voices[i]), 16000)
            split = ["train", "valid", "test"][i] if n == 3 else "train"
            planted[rel] = split
            (valid if split == "valid" else test if split == "test" else []).append(rel)
    (root / "validation_list.txt").write_text("\n".join(valid) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    rng = np.random.default_rng(0)
    write(root / "_background_noise_/white_noise.wav", 0.1 * noise("white", 10 * 16000, rng), 16000)
    write(root / "_background_noise_/pink_noise.wav", 0.1 * noise("pink", 10 * 16000 + 5000, rng), 16000)
    (root / "_background_noise_/README.md").write_text("noise")
    (root / "LICENSE").write_text("CC-BY-4.0")
    # the test archive: already 1 s clips in 12 folders, other speakers than the main archive
    archive = f"speech_commands_test_set_v0.0{version}"
    for folder in TEST_FOLDERS:
        for i, voice in enumerate(("en+f2", "en-us+m4")):
            rel = f"{archive}/{folder}/{folder.strip('_')}{i:07x}_nohash_{i}.wav"
            if folder == "_silence_":
                x = 0.02 * noise("pink", 16000, rng)
            else:
                x = say("house" if folder == "_unknown_" else folder, voice)
            write(root / rel, x, 16000)
            planted[rel] = "test"
    return planted


LBS_TEXTS = ["one two three", "the cat sat", "red green blue", "a quiet day", "seven eight",
             "good morning"]


def build_librispeech(root: Path) -> Truth:
    """LibriSpeech/train-clean-100/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac, 16 kHz flac.

    Speaker 19 reads two chapters, as many LibriSpeech speakers do; the label is LAPE's
    class, the chapter (``<spk>-<chapter>``)."""
    truth: Truth = {}
    (root / "SPEAKERS.TXT").write_text(";ID |SEX| SUBSET |MINUTES| NAME\n")
    for spk, chap, voice in (("19", "198", "en+m1"), ("19", "227", "en+m1"), ("26", "495", "en+f2"),
                             ("103", "1240", "en-us+m4")):
        chapter = root / "train-clean-100" / spk / chap
        lines = []
        for u, text in enumerate(LBS_TEXTS):
            name = f"{spk}-{chap}-{u:04d}"
            write(chapter / f"{name}.flac", say(text, voice), 16000, fmt="FLAC")
            lines.append(f"{name} {text.upper()}")
            truth[f"{name}.wav"] = ("?", f"{spk}-{chap}")
        (chapter / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return truth


def build_voxceleb(root: Path) -> Truth:
    """wav/idNNNNN/<yt>/NNNNN.wav (16 kHz) + iden_split.txt."""
    truth: Truth = {}
    lines = []
    for s, voice in enumerate(["en+m1", "en+f3", "en+m7"]):
        spk = f"id1000{s + 1}"
        for v, yt in enumerate(["1zcIwhmdeo4", "7gWzIy6yIIk"]):
            for u in range(2):
                rel = f"{spk}/{yt}/{u + 1:05d}.wav"
                write(root / "wav" / rel, say(f"video {v} part {u}", voice), 16000)
                code = "1" if v == 0 else "2" if u == 0 else "3"
                lines.append(f"{code} {rel}")
                truth[rel.replace("/", "__")] = ({"1": "train", "2": "valid", "3": "test"}[code], spk)
    (root / "iden_split.txt").write_text("\n".join(lines) + "\n")
    return truth


_EMO_TEXT = {"neu": "it is a table", "ang": "get out now", "sad": "i miss her",
             "hap": "this is great", "exc": "we won", "fru": "not again"}


def build_iemocap(root: Path) -> Truth:
    """IEMOCAP_full_release/Session<k>/{sentences/wav,dialog/EmoEvaluation}."""
    truth: Truth = {}
    label = {"neu": "neutral", "ang": "angry", "sad": "sad", "hap": "happy", "exc": "happy"}
    voice_of = {"neu": "en", "ang": "en+m3", "sad": "en+f2", "hap": "en+f4", "exc": "en+f4",
                "fru": "en+m2"}
    for k in range(1, 6):
        dialog = f"Ses0{k}F_impro01"
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        for i, code in enumerate(["neu", "ang", "sad", "hap", "exc", "fru", "neu", "ang", "sad", "hap"]):
            utt = f"{dialog}_F{i:03d}"
            write(root / f"Session{k}/sentences/wav/{dialog}/{utt}.wav",
                  say(_EMO_TEXT[code], voice_of[code]), 16000)
            lines += [f"[{i * 3.0:.4f} - {i * 3.0 + 2.5:.4f}]\t{utt}\t{code}\t[2.5000, 3.0000, 2.5000]",
                      "C-E1:\tNeutral state;\t()", ""]
            if code in label:
                truth[f"{utt}.wav"] = ("test" if k == 5 else "trainval", label[code])
        eva = root / f"Session{k}/dialog/EmoEvaluation"
        eva.mkdir(parents=True, exist_ok=True)
        (eva / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
        (eva / "Categorical").mkdir(exist_ok=True)
        (eva / "Categorical" / f"{dialog}_e1_cat.txt").write_text("x :Neutral state; ()\n")
    return truth


VF_VOICES = {"de": "de", "en": "en", "es": "es", "fr": "fr", "it": "it", "ru": "ru"}
VF_TEXT = {"de": "guten tag wie geht es", "en": "good day how are you", "es": "buenos dias como estas",
           "fr": "bonjour comment allez vous", "it": "buongiorno come stai", "ru": "добрый день как дела"}


def build_voxforge(root: Path) -> Truth:
    """<lang>/<user>-<date>-<id>/{wav/*.wav, flac/*.flac, etc/PROMPTS}."""
    truth: Truth = {}
    for lang, voice in VF_VOICES.items():
        for s, session in enumerate([f"user{lang}-20100101-abc", f"anon{lang}-20120304-xyz"]):
            sdir = root / lang / session
            (sdir / "etc").mkdir(parents=True, exist_ok=True)
            (sdir / "etc/PROMPTS").write_text("prompts\n")
            for u in range(3):
                speed = 140 + 30 * u
                x = say(VF_TEXT[lang], voice, 16000, speed)
                if s == 1 and lang == "de":  # a flac session, as some archives are
                    write(sdir / f"flac/de{u}.flac", x, 16000, fmt="FLAC")
                    truth[f"{lang}__{session}__de{u}.wav"] = ("?", lang)
                else:
                    write(sdir / f"wav/a{u:04d}.wav", x, 16000)
                    truth[f"{lang}__{session}__a{u:04d}.wav"] = ("?", lang)
    return truth


NS_PROGRAMS = {"bass": 33, "brass": 61, "flute": 73, "guitar": 25, "keyboard": 0, "mallet": 12,
               "organ": 19, "reed": 65, "string": 40, "synth_lead": 81, "vocal": 53}


def build_nsynth(root: Path) -> Truth:
    """nsynth-{train,valid,test}/{examples.json,audio/<note_str>.wav}, 4 s 16 kHz."""
    truth: Truth = {}
    families = list(NS_PROGRAMS)
    for split, folder, fams, pitches in (("train", "nsynth-train", families, (48, 60)),
                                         ("valid", "nsynth-valid", families[:4], (55,)),
                                         ("test", "nsynth-test", families[:4], (57,))):
        examples = {}
        for fam_idx, fam in enumerate(fams):
            for p in pitches:
                note = f"{fam}_acoustic_{fam_idx:03d}-{p:03d}-100"
                write(root / folder / "audio" / f"{note}.wav", play(NS_PROGRAMS[fam], p, 4.0, 16000), 16000)
                examples[note] = {"note": len(examples), "note_str": note, "pitch": p, "velocity": 100,
                                  "sample_rate": 16000, "instrument_family": fam_idx,
                                  "instrument_family_str": fam, "instrument_source": 0,
                                  "instrument_source_str": "acoustic", "qualities": [0] * 10,
                                  "qualities_str": []}
                truth[f"{note}.wav"] = (split, fam)
        (root / folder / "examples.json").write_text(json.dumps(examples))
    return truth


def build_bird_audio(root: Path, merged_wav_dir: bool = False, release: str = "2018") -> Truth:
    """ff1010bird/wav + warblrb10k/wav (44.1 kHz, 10 s) and the two metadata CSVs: DCASE
    2018's (``*_2018.csv``: itemid,datasetid,hasbird) or the 2016 figshare release that
    LAPE used (``*_metadata.csv``: itemid,hasbird)."""
    truth: Truth = {}
    rng = np.random.default_rng(1)
    suffix = "_2018" if release == "2018" else ""
    for dataset, csv_name, ids in (("ff1010bird", f"ff1010bird_metadata{suffix}.csv", range(100, 106)),
                                   ("warblrb10k", f"warblrb10k_public_metadata{suffix}.csv",
                                    ["759808e5-f824-401e-9058", "1d94fc4a-1c63-4da0-9cac",
                                     "bb0099ce-3073-4613-8557", "c4c67e81-9aa8-4af4-8eb7",
                                     "ab9fa3b4-a5f0-4b29-a0b4", "ff0ac50c-8b5d-4d76-9d5f"])):
        rows = ["itemid,datasetid,hasbird" if release == "2018" else "itemid,hasbird"]
        for j, item in enumerate(ids):
            has = j % 2
            x = 0.05 * noise("brown", 441000, rng)
            if has:
                x = x + play(123, 84 + j, 10.0, 44100)  # GM 124 "Bird Tweet"
            wav_dir = root / "wav" if merged_wav_dir else root / dataset / "wav"
            write(wav_dir / f"{item}.wav", x, 44100)
            rows.append(f"{item},{dataset},{has}" if release == "2018" else f"{item},{has}")
            truth[f"{dataset}__{item}.wav"] = ("?", "bird" if has else "no_bird")
        (root / csv_name).write_text("\n".join(rows) + "\n")
    return truth


TUT_SCENES = {"park": ("brown", None), "street_traffic": ("pink", 32), "metro": ("white", 20)}


def build_tut(root: Path) -> Truth:
    """TUT-urban-acoustic-scenes-2018-development: 48 kHz 24-bit stereo audio, meta.csv,
    evaluation_setup/fold1_{train,evaluate,test}.txt."""
    truth: Truth = {}
    rng = np.random.default_rng(2)
    meta = ["filename\tscene_label\tidentifier\tsource_label"]
    train, evaluate, test = [], [], []
    for scene, (kind, program) in TUT_SCENES.items():
        for city, loc in (("barcelona", 0), ("helsinki", 1), ("lyon", 2), ("paris", 3)):
            for seg in range(2):
                name = f"{scene}-{city}-{loc}-{seg}-a.wav"
                x = 0.2 * noise(kind, 480000, rng)
                if program is not None:
                    x = x + play(program, 40 + seg, 10.0, 48000)
                write(root / "audio" / name, x, 48000, subtype="PCM_24", channels=2)
                meta.append(f"audio/{name}\t{scene}\t{city}-{loc}\ta")
                line = f"audio/{name}\t{scene}"
                split = "test" if city == "paris" else "trainval"
                (evaluate if split == "test" else train).append(line)
                if split == "test":
                    test.append(f"audio/{name}")
                truth[name] = (split, scene)
    (root / "meta.csv").write_text("\n".join(meta) + "\n")
    setup = root / "evaluation_setup"
    setup.mkdir()
    (setup / "fold1_train.txt").write_text("\n".join(train) + "\n")
    (setup / "fold1_evaluate.txt").write_text("\n".join(evaluate) + "\n")
    (setup / "fold1_test.txt").write_text("\n".join(test) + "\n")
    return truth


# (sample rate, subtype, channels) of real UrbanSound8K files: they keep Freesound's formats.
US8K_FORMATS = [(44100, "PCM_16", 2), (48000, "PCM_24", 2), (22050, "PCM_U8", 1), (96000, "FLOAT", 1),
                (8000, "PCM_16", 1)]
US8K_SOURCES = {"dog_bark": ("drum", 36), "siren": ("prog", 81), "children_playing": ("speech", None)}


def build_urbansound(root: Path) -> Truth:
    """UrbanSound8K/{audio/fold1..10, metadata/UrbanSound8K.csv}, mixed formats."""
    truth: Truth = {}
    rows = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    class_id = {"dog_bark": 3, "siren": 8, "children_playing": 2}
    n = 0
    for fold in range(1, 11):
        for cls, (kind, p) in US8K_SOURCES.items():
            sr, subtype, ch = US8K_FORMATS[n % len(US8K_FORMATS)]
            fs_id = 1000 + n
            name = f"{fs_id}-{class_id[cls]}-0-{fold}.wav"
            if kind == "speech":
                x = say("hey look at me", "en+f5", sr)
            elif kind == "drum":
                x = play(0, p, 2.0, sr, drums=True)
            else:
                x = play(p, 70, 2.0, sr)
            write(root / f"audio/fold{fold}" / name, x, sr, subtype=subtype, channels=ch)
            rows.append(f"{name},{fs_id},0.0,2.0,1,{fold},{class_id[cls]},{cls}")
            truth[name] = (f"fold{fold - 1:02d}", cls)
            n += 1
    (root / "metadata").mkdir(parents=True)
    (root / "metadata/UrbanSound8K.csv").write_text("\n".join(rows) + "\n")
    return truth


BUILDERS = {
    "lbs": build_librispeech, "vc": build_voxceleb, "ic": build_iemocap, "vf": build_voxforge,
    "ns": build_nsynth, "bsd": build_bird_audio, "tut": build_tut, "us8k": build_urbansound,
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Build every miniature once, convert it; {task key: (source root, task dir, truth)}."""
    base = tmp_path_factory.mktemp("lape")
    out = base / "tasks"
    done = {}
    for version in (1, 2):
        src = base / f"speech_commands_v0.0{version}"
        planted = build_speech_commands(src, version)
        keys = ["sc_v1"] if version == 1 else ["sc_v2_12", "sc_v2_35"]
        for key in keys:
            done[key] = (src, converter(key).convert(src, out, workers=2, progress=False), planted)
    for key, build in BUILDERS.items():
        src = base / key
        src.mkdir()
        truth = build(src)
        done[key] = (src, converter(key).convert(src, out, workers=2, progress=False), truth)
    # the variants read the same sources; lbs_spk's truth is the speaker of each utterance
    src, _, truth = done["lbs"]
    speaker_truth = {n: (s, "spk" + lab.split("-")[0]) for n, (s, lab) in truth.items()}
    done["lbs_spk"] = (src, converter("lbs_spk").convert(src, out, workers=2, progress=False),
                       speaker_truth)
    # BSD from the 2016 figshare label files (itemid,hasbird), which LAPE used
    src = base / "bsd_2016"
    src.mkdir()
    truth = build_bird_audio(src, release="2016")
    done["bsd_2016"] = (src, converter("bsd").convert(src, base / "tasks_2016", workers=2,
                                                      progress=False), truth)
    return done


# --------------------------------------------------------------------------- tests


def _clips(task) -> dict[str, tuple[str, str]]:
    return {name: (split, labels[0]) for split, clips in task.labels.items()
            for name, labels in clips.items()}


def test_every_task_is_covered():
    assert set(TASKS) == {"sc_v1", "sc_v2_12", "sc_v2_35"} | set(BUILDERS)
    assert set(VARIANTS) == {"lbs_spk"}


@pytest.mark.parametrize("key", [*TASKS, *VARIANTS])
def test_valid_hear_task_with_window(converted, key):
    _, task_dir, _ = converted[key]
    task = validate_task(task_dir)  # 16 kHz mono 16-bit, lengths = window, labels in vocab
    conv = converter(key)
    assert task.metadata.sample_duration == conv.window
    assert task.sample_rates == [16000]
    assert task.metadata.notes["split"]
    assert all(task.labels[s] for s in task.metadata.splits)


@pytest.mark.parametrize("key", [*BUILDERS, *VARIANTS, "bsd_2016"])
def test_labels_and_official_splits(converted, key):
    _, task_dir, truth = converted[key]
    got = _clips(load_task(task_dir))
    assert set(got) == set(truth)
    for name, (split, label) in truth.items():
        assert got[name][1] == label, name
        if split == "trainval":
            assert got[name][0] in ("train", "valid"), name
        elif split != "?":
            assert got[name][0] == split, name


@pytest.mark.parametrize("key", ["sc_v1", "sc_v2_12", "sc_v2_35"])
def test_speech_commands_labels_and_lists(converted, key):
    src, task_dir, planted = converted[key]
    task = load_task(task_dir)
    got = _clips(task)
    archive = f"speech_commands_test_set_v0.0{1 if key == 'sc_v1' else 2}/"
    for rel, split in planted.items():
        if rel.startswith(archive):  # the official 12-class test archive: label = its folder
            _, folder, file = rel.split("/")
            name = f"test__{folder}__{file}"
            if key == "sc_v2_35":
                assert name not in got
            else:
                assert got[name] == ("test", folder), name
            continue
        word = rel.split("/")[0]
        name = rel.replace("/", "__")
        want = word if key == "sc_v2_35" else word if word in COMMANDS else "_unknown_"
        if split == "test" and key != "sc_v2_35":
            assert name not in got, name  # testing_list.txt is not the 12-class test set
        else:
            assert got[name] == (split, want), name
    silence = {n: s for n, (s, lab) in got.items() if lab == "_silence_"}
    if key == "sc_v2_35":
        assert not silence and len(task.vocabulary) == 35
    else:
        assert sorted(task.vocabulary) == sorted(list(COMMANDS) + ["_silence_", "_unknown_"])
        # the test set is exactly the archive's 12 folders x 2 clips
        assert len(task.labels["test"]) == 24
        assert set(task.label_counts("test").values()) == {2}
        # 10 whole seconds of white noise and 10.3 s of pink: 10 segments each, 9 train / 1 valid
        noise_splits = [s for n, s in sorted(silence.items()) if "_noise__" in n]
        assert len(noise_splits) == 20 and noise_splits.count("train") == 18
        assert noise_splits.count("valid") == 2


def test_speech_commands_test_archive_missing(converted, tmp_path):
    src, _, _ = converted["sc_v1"]
    root = tmp_path / "speech_commands_v0.01"
    root.mkdir()
    for item in src.iterdir():
        if not item.name.startswith("speech_commands_test_set"):
            (root / item.name).symlink_to(item)
    with pytest.raises(LayoutError, match="speech_commands_test_set_v0.01"):
        converter("sc_v1").convert(root, tmp_path / "tasks", progress=False)
    (root / "speech_commands_test_set_v0.01").mkdir()
    for folder in TEST_FOLDERS[:-1]:
        (root / "speech_commands_test_set_v0.01" / folder).mkdir()
    with pytest.raises(LayoutError, match="1 folder.*_silence_"):
        converter("sc_v1").convert(root, tmp_path / "tasks", progress=False)
    # the 35-class task does not need the archive
    assert converter("sc_v2_35").layout.count("speech_commands_test_set") == 0


def test_silence_segments_are_the_noise_recording(converted):
    src, task_dir, _ = converted["sc_v2_12"]
    task = load_task(task_dir)
    noise_x, _ = sf.read(str(src / "_background_noise_/white_noise.wav"), dtype="float32")
    split = task.labels["valid"]
    name = next(n for n in split if n.startswith("_silence___white_noise"))
    index = int(name.rsplit("__", 1)[1][:4])
    assert index == 9  # the last 10 % of the recording
    clip, sr = task.read_audio("valid", name)
    ref = noise_x[index * 16000:(index + 1) * 16000]
    assert sr == 16000 and np.max(np.abs(clip - ref)) < 1e-3  # 16-bit rounding only


def test_librispeech_chapters_and_speaker_variant(converted):
    lbs = load_task(converted["lbs"][1])
    spk = load_task(converted["lbs_spk"][1])
    # LAPE's LBS: one class per chapter folder (4 here, 585 in train-clean-100)
    assert lbs.vocabulary == ["103-1240", "19-198", "19-227", "26-495"]
    assert "585" in lbs.metadata.notes["classes"] and lbs.metadata.task_name == "lape_lbs"
    # the variant: one class per speaker, stated in its metadata
    assert spk.vocabulary == ["spk103", "spk19", "spk26"]
    assert spk.metadata.task_name == "lape_lbs_spk" and "variant" in spk.metadata.notes["classes"]
    # 20 % of each chapter's 6 utterances test (1), the rest train/valid
    for chapter in lbs.vocabulary:
        assert lbs.label_counts("test")[chapter] == 1
        assert lbs.label_counts("train")[chapter] + lbs.label_counts("valid")[chapter] == 5


def test_bsd_2016_and_2018_label_files_give_the_same_task(converted):
    a = _clips(load_task(converted["bsd"][1]))
    b = _clips(load_task(converted["bsd_2016"][1]))
    assert a == b and {lab for _, lab in a.values()} == {"bird", "no_bird"}


def test_class_missing_from_a_split_is_reported_not_shifted(converted, capfd):
    from eval_suites.lape.nsynth import FAMILIES

    task = load_task(converted["ns"][1])
    # the miniature's valid and test splits hold 4 of the 11 families
    assert task.vocabulary == sorted(FAMILIES)
    missing = task.metadata.notes["missing_classes"]
    assert set(missing) == {"valid", "test"} and "synth_lead" in missing["test"]
    assert missing["test"] == sorted(set(FAMILIES) - set(list(NS_PROGRAMS)[:4]))
    assert "train" not in missing


def test_carved_validation_is_recorded_and_disjoint(converted):
    for key in ("lbs", "ic", "vf", "bsd", "tut"):
        task = load_task(converted[key][1])
        assert task.labels["valid"], key
        assert "seed" in task.metadata.notes["split"], key
    # TUT: a recording location never straddles train and valid
    task = load_task(converted["tut"][1])
    loc = lambda n: "-".join(n.split("-")[1:3])  # noqa: E731
    assert not {loc(n) for n in task.labels["train"]} & {loc(n) for n in task.labels["valid"]}
    # LBS (chapters) and its speaker variant: every class in every split (closed set)
    for key in ("lbs", "lbs_spk"):
        task = load_task(converted[key][1])
        for split in ("train", "valid", "test"):
            assert all(c > 0 for c in task.label_counts(split).values()), (key, split)


def test_stratified_test_shares(converted):
    for key in ("vf", "bsd"):
        task = load_task(converted[key][1])
        for label in task.vocabulary:
            n = {s: task.label_counts(s)[label] for s in ("train", "valid", "test")}
            total = sum(n.values())
            assert abs(n["test"] - 0.2 * total) <= 1, (key, label, n)


def test_us8k_is_presplit_kfold_from_mixed_formats(converted):
    src, task_dir, truth = converted["us8k"]
    task = validate_task(task_dir)
    assert task.metadata.split_mode == "presplit_kfold" and task.metadata.nfolds == 10
    # an 8-bit 22.05 kHz source decodes to the same signal as the task clip
    name = next(n for n in truth if sf.info(str(src / f"audio/fold{int(truth[n][0][4:]) + 1}" / n)).subtype == "PCM_U8")
    fold = truth[name][0]
    x, sr = sf.read(str(src / f"audio/fold{int(fold[4:]) + 1}" / name), dtype="float32")
    clip, _ = task.read_audio(fold, name)
    ref = resample(x, sr, 16000)
    n = min(len(ref), len(clip))
    assert np.corrcoef(ref[:n], clip[:n])[0, 1] > 0.99


def test_tut_stereo_48k_24bit_is_mixed_down(converted):
    src, task_dir, truth = converted["tut"]
    task = load_task(task_dir)
    name = sorted(task.labels["test"])[0]
    x, sr = sf.read(str(src / "audio" / name), dtype="float32")
    assert x.ndim == 2 and sr == 48000
    ref = resample(x.mean(axis=1), 48000, 16000)[: 9 * 16000]
    clip, _ = task.read_audio("test", name)
    assert len(clip) == 9 * 16000 and np.max(np.abs(clip - ref)) < 2e-3


def test_rerun_is_idempotent_and_resumes(converted, tmp_path):
    src, task_dir, _ = converted["vc"]
    before = {p: p.stat().st_mtime_ns for p in task_dir.rglob("*")}
    assert converter("vc").convert(src, task_dir.parent, progress=False) == task_dir
    assert {p: p.stat().st_mtime_ns for p in task_dir.rglob("*")} == before
    # interrupted run: convert, remove metadata + some clips, restore progress state
    out = tmp_path / "tasks"
    conv = converter("vc")
    meta = conv.metadata()
    writer = TaskWriter(out / meta.folder_name, meta)
    first = conv.list_clips(src)[0]
    x, sr = read_audio(first.source)
    writer.add_clip(first.split, first.name, x, sr, list(first.labels))
    written = out / meta.folder_name / "16000" / first.split / first.name
    stamp = written.stat().st_mtime_ns
    conv.convert(src, out, progress=False)
    assert written.stat().st_mtime_ns == stamp  # kept, not rewritten
    assert _clips(validate_task(out / meta.folder_name)) == _clips(load_task(task_dir))


# --------------------------------------------------------------------------- protocols

TOY = ModelSpec(name="toy", module="hear_toy_module", options={"n_mels": 16})


@pytest.fixture(scope="module")
def embedded(converted, tmp_path_factory):
    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("embeddings")
    model = load_hear_model(TOY, device="cpu")
    return {key: ensure_embeddings(TOY, task_dir, cache, lambda: model, progress=False)
            for key, (_, task_dir, _) in converted.items() if key in TASKS}


def _check(metrics, nfolds):
    assert metrics and metrics[0][0] == "top1_acc"
    for name, mean, std, folds in metrics:
        assert math.isfinite(mean) and 0.0 <= mean <= 1.0, (name, mean)
        assert folds == nfolds


@pytest.mark.parametrize("key", list(TASKS))
def test_linear_protocol(embedded, key):
    metrics, folds = run_linear(embedded[key], LinearConfig(epochs=3, device="cpu"), progress=False)
    nfolds = 10 if key == "us8k" else 1
    assert metrics and metrics[0][0] == "top1_acc" and len(folds) == nfolds
    # The summary is the mean and sample std over the test folds, each fold testing a different split.
    assert len({f.test_split for f in folds}) == nfolds
    for name, mean, std, n in metrics:
        values = [f.test_scores[name] for f in folds]
        assert n == nfolds and mean == pytest.approx(sum(values) / nfolds), name
        if nfolds > 1:
            expected_std = math.sqrt(sum((v - mean) ** 2 for v in values) / (nfolds - 1))
            assert std == pytest.approx(expected_std), name
        else:
            assert std is None


@pytest.mark.slow
@pytest.mark.parametrize("key", list(TASKS))
def test_heareval_protocol(embedded, key, tmp_path):
    """heareval's reported accuracy is the one its own stored test predictions give, fold by fold."""
    metrics, _ = run_heareval(embedded[key], tmp_path / "heareval",
                              HearevalConfig(grid="fast", grid_points=1), outputs_dir=tmp_path / "outputs")
    nfolds = 10 if key == "us8k" else 1
    _check(metrics, nfolds)
    folds = load_outputs(tmp_path / "outputs").folds
    assert len(folds) == nfolds
    accuracy = [float((f.scores.argmax(1) == f.targets.argmax(1)).mean()) for f in folds]
    assert metrics[0][1] == pytest.approx(sum(accuracy) / nfolds)
