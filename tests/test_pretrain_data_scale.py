"""The data pipeline at scale: crops by partial read, the parallel cached header scan, and
the prepared store (`python -m pretrain.prepare`): round trip, resume, idempotence, refusals,
statistics and training from it. References: the whole-file decode + crop of `pretrain.data`."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

import pretrain.data as data
import pretrain.prepare as prepare_mod
from hear_slicer.frontend import FrontendConfig
from pretrain.config import load_config
from pretrain.data import AudioCrops, decode_audio, random_crop, read_crops, resampled_length, scan_files
from pretrain.prepare import main as prepare_main
from pretrain.prepare import prepare
from pretrain.stats import compute_stats
from pretrain.store import INT16_SCALE, StoreCrops, StoreError
from pretrain.train import train

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
N = 15200  # 0.95 s at 16 kHz


def noisy_tones(sr: int, seconds: float, seed: int, channels: int = 2) -> np.ndarray:
    """(n, channels) float32: tones + noise, different per channel, peak < 1."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    chans = [sum(0.2 * np.sin(2 * np.pi * f * t + p) for f, p in zip(rng.uniform(50, 7000, 3), rng.uniform(0, 6, 3)))
             + 0.05 * rng.standard_normal(len(t)) for _ in range(channels)]
    return np.stack(chans, axis=1).astype(np.float32)


def whole_file_crops(path: Path, n: int, v: int, seed: int, silence_peak: float = 0.0) -> np.ndarray:
    """The reference: decode and resample the whole file, then crop as AudioCrops always did."""
    x = decode_audio(path, 16000, silence_peak)
    rng = np.random.default_rng(seed)
    return np.stack([random_crop(x, n, rng) for _ in range(v)])


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"), ("FLAC", "PCM_24")])
def test_partial_read_crop_equals_whole_file_crop(tmp_path, fmt, subtype, monkeypatch):
    """Stereo 44.1 kHz (and 48 / 16 kHz) WAV and FLAC: crops read by seeking are the crops of
    the whole-file decode up to the resampler's float rounding, for every seed and both views."""
    files = []
    for sr in (44100, 48000, 16000):
        path = tmp_path / f"a{sr}.{fmt.lower()}"
        sf.write(path, noisy_tones(sr, 3.0, seed=sr), sr, format=fmt, subtype=subtype)
        files.append(path)
    refs = {(p, s): whole_file_crops(p, N, 2, s) for p in files for s in range(12)}

    def no_whole_decode(*a, **k):
        raise AssertionError("a seekable format must not be decoded whole")

    monkeypatch.setattr(data, "decode_audio", no_whole_decode)
    for (path, seed), ref in refs.items():
        got = read_crops(path, 16000, N, 2, seed)
        assert got.shape == (2, N) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5, err_msg=f"{path.name} seed {seed}")
    # crops that touch the first and the last sample (no margin on that side) are exact too
    with sf.SoundFile(files[0]) as f:
        for start in (0, resampled_length(f.frames, 44100, 16000) - N):
            span = data._read_span(f, start, N, 16000)
            ref = soxr.resample(sf.read(files[0], dtype="float32")[0].mean(axis=1), 44100, 16000)[start:start + N]
            np.testing.assert_allclose(span, ref, rtol=0, atol=1e-5)


def test_formats_that_cannot_seek_exactly_and_short_files_are_decoded_whole(tmp_path, monkeypatch):
    ogg, short = tmp_path / "a.ogg", tmp_path / "short.flac"
    sf.write(ogg, noisy_tones(44100, 2.0, 1), 44100, format="OGG", subtype="VORBIS")
    sf.write(short, noisy_tones(44100, 0.5, 2), 44100)  # shorter than a crop: padded at a random offset
    refs = {p: whole_file_crops(p, N, 2, 7) for p in (ogg, short)}
    calls = []
    real = data.decode_audio
    monkeypatch.setattr(data, "decode_audio", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    for p, ref in refs.items():
        np.testing.assert_array_equal(read_crops(p, 16000, N, 2, 7), ref)
    assert calls == [ogg, short]


def test_resampled_length_is_soxr_output_length():
    rng = np.random.default_rng(0)
    for sr in (8000, 22050, 32000, 44100, 48000, 96000):
        for n in rng.integers(1, 100000, 25):
            assert resampled_length(int(n), sr, 16000) == len(soxr.resample(np.zeros(n, np.float32), sr, 16000))


def test_silence_is_judged_on_the_whole_file(tmp_path):
    """A silent crop of a good file is kept (as before); a silent file is still skipped."""
    x = np.zeros((44100 * 3, 2), np.float32)
    x[-2000:] = 0.5  # audible only at the very end
    quiet, silent = tmp_path / "quiet.wav", tmp_path / "silent.flac"
    sf.write(quiet, x, 44100)
    sf.write(silent, np.zeros((44100, 2), np.float32), 44100)
    np.testing.assert_allclose(read_crops(quiet, 16000, 4000, 1, 0, 1e-4), whole_file_crops(quiet, 4000, 1, 0),
                               rtol=0, atol=1e-5)
    assert np.abs(read_crops(quiet, 16000, 4000, 1, 0, 1e-4)).max() == 0  # this seed's crop is in the silence
    with pytest.raises(data.AudioFileError, match="silent"):
        read_crops(silent, 16000, 4000, 1, 0, 1e-4)


def test_header_scan_is_parallel_cached_and_invalidated_by_changes(tmp_path, monkeypatch):
    files = []
    for i in range(12):
        p = tmp_path / f"f{i}.wav"
        sf.write(p, noisy_tones(16000, 0.2, i, 1), 16000)
        files.append(p)
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    files.append(tmp_path / "bad.wav")
    files.append(tmp_path / "missing.wav")
    calls = []
    real = data._header
    monkeypatch.setattr(data, "_header", lambda p: calls.append(p) or real(p))
    cache = tmp_path / "run" / "header_scan.csv"
    first = scan_files(files, workers=4, cache=cache, progress=True)
    assert first[0] == files[:12] and [Path(p).name for p, _ in first[1]] == ["bad.wav", "missing.wav"]
    assert len(calls) == 13 and cache.is_file()  # every existing file's header read once
    calls.clear()
    assert scan_files(files, workers=4, cache=cache) == first and calls == []  # second run: no header read
    sf.write(files[3], noisy_tones(16000, 0.3, 99, 1), 16000)  # changed file: scanned again
    os.utime(files[3], ns=(1, 1))
    assert scan_files(files, workers=2, cache=cache) == first and calls == [files[3]]
    with pytest.raises(ValueError, match="at least 1"):
        scan_files(files, workers=0)


# ----------------------------------------------------------------------------- prepared store
def make_source(root: Path) -> Path:
    """7 good files (44.1/48/16 kHz, stereo and mono, WAV and FLAC, one shorter than a crop) and 3 bad ones."""
    root.mkdir(parents=True)
    for i in range(7):
        sr = (44100, 48000, 16000)[i % 3]
        seconds = 0.6 if i == 5 else 1.5 + 0.25 * i
        sf.write(root / f"good{i}.{'flac' if i % 2 else 'wav'}", noisy_tones(sr, seconds, i, 1 + i % 2), sr)
    (root / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 3)
    sf.write(root / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(root / "silent.flac", np.zeros(16000, np.float32), 16000)
    return root


def store_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return make_source(tmp_path_factory.mktemp("src") / "audio")


@pytest.fixture(scope="module")
def store(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stores") / "store"
    prepare(source, out, workers=2, files_per_shard=3, progress=False)
    return out


def test_store_round_trip(source, store):
    info = json.loads((store / "store.json").read_text())
    assert info["complete"] and info["clips"] == 7 and info["skipped"] == 3 and info["sample_rate"] == 16000
    with open(store / "skipped.csv", newline="") as f:
        assert {Path(r["path"]).name: r["reason"].split(" ")[0] for r in csv.DictReader(f)} == {
            "corrupt.wav": "unreadable:", "empty.wav": "empty", "silent.flac": "silent"}
    with open(store / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:  # the manifest's durations are those of the resampled audio
        x = decode_audio(r["path"], 16000)
        assert int(r["samples"]) == len(x) and float(r["duration_s"]) == pytest.approx(len(x) / 16000, abs=1e-6)
    ds = StoreCrops(store, 16000, N, crops_per_item=2)
    raw = AudioCrops([Path(p) for p in ds.files], 16000, N, crops_per_item=2, partial_read=False)
    for i in range(len(ds)):
        clip = ds.clip(i).astype(np.float32) / INT16_SCALE
        np.testing.assert_allclose(clip, decode_audio(ds.files[i], 16000), rtol=0, atol=0.5 / INT16_SCALE + 1e-7)
        for seed in (0, 1, 2):
            # the same spans as the raw loader (same offsets), up to int16 rounding
            np.testing.assert_allclose(ds[(i, seed)]["wave"].numpy(), raw[(i, seed)]["wave"].numpy(), rtol=0,
                                       atol=0.5 / INT16_SCALE + 1e-7)
    # a quieter threshold at training time skips clips by their stored peak
    q = int(np.argmin([float(r["peak"]) for r in rows]))
    loud = StoreCrops(store, 16000, N, silence_peak=float(rows[q]["peak"]))  # the quietest clip is now "silent"
    item = loud[(q, 0)]
    assert item["skipped"] == [(rows[q]["path"], f"silent (peak <= {float(rows[q]['peak']):g})")]
    nxt = (q + 1) % len(rows)
    np.testing.assert_array_equal(item["wave"].numpy(), ds[(nxt, 0)]["wave"].numpy()[:1])  # replaced by the next
    with pytest.raises(StoreError, match="22050 Hz|frontend.sample_rate"):
        StoreCrops(store, 22050, N)


def test_stats_from_the_store_match_the_raw_files(store):
    ds = StoreCrops(store, 16000, N)
    raw = AudioCrops([Path(p) for p in ds.files], 16000, N)
    a = compute_stats(ds, FrontendConfig(), 2, 1.0, 7, 100, 20, 1, seed=0)
    b = compute_stats(raw, FrontendConfig(), 2, 1.0, 7, 100, 20, 1, seed=0)
    assert a.n_files == b.n_files == 7
    assert a.mean == pytest.approx(b.mean, abs=1e-3) and a.std == pytest.approx(b.std, abs=1e-3)
    torch.testing.assert_close(a.centroids, b.centroids, atol=1e-3, rtol=0)


def test_a_killed_prepare_resumes_to_the_same_store_and_a_rerun_does_nothing(source, store, tmp_path, monkeypatch):
    out = tmp_path / "store"
    real = prepare_mod._prepare_shard

    def dies_on_shard_2(root, shard, *a):
        if shard == 2:
            raise KeyboardInterrupt  # as if the run was killed while writing shard 2
        return real(root, shard, *a)

    monkeypatch.setattr(prepare_mod, "_prepare_shard", dies_on_shard_2)
    with pytest.raises(KeyboardInterrupt):
        prepare(source, out, workers=1, files_per_shard=3, progress=False)
    assert not json.loads((out / "store.json").read_text())["complete"]
    (out / "shards" / ".00002.pcm.tmp").write_bytes(b"half a shard")  # what a kill mid-write leaves
    with pytest.raises(StoreError, match="unfinished"):
        StoreCrops(out, 16000, N)
    monkeypatch.setattr(prepare_mod, "_prepare_shard", real)
    prepare(source, out, workers=2, files_per_shard=3, progress=False)
    assert store_bytes(out) == store_bytes(store)  # byte-identical to the store written in one go
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    prepare(source, out, workers=2, files_per_shard=3, progress=False)  # complete: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_prepare_refuses_bad_flags_and_never_overwrites(source, store, tmp_path, capsys):
    before = store_bytes(store)
    other = make_source(tmp_path / "other")
    (other / "extra.wav").write_bytes((other / "good0.wav").read_bytes())
    cases = {
        ("--workers", "0"): "--workers must be at least 1",
        ("--files-per-shard", "0"): "--files-per-shard must be at least 1",
        ("--sample-rate", "10"): "--sample-rate must be between",
        ("--silence-peak", "1.5"): "--silence-peak must be in",
        ("--extensions", "w/v"): "--extensions must be file extensions",
    }
    for flags, message in cases.items():
        assert prepare_main([str(source), str(tmp_path / "new"), *flags, "--no-progress"]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    assert prepare_main([str(other), str(store), "--files-per-shard", "3", "--no-progress"]) == 2
    assert "store of another source or settings" in capsys.readouterr().err
    assert prepare_main([str(source), str(store), "--files-per-shard", "4", "--no-progress"]) == 2
    assert "files_per_shard" in capsys.readouterr().err
    assert store_bytes(store) == before  # untouched
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert prepare_main([str(source), str(tmp_path / "busy"), "--no-progress"]) == 2
    assert "not a prepared store" in capsys.readouterr().err
    assert prepare_main([str(store), str(tmp_path / "again"), "--no-progress"]) == 2
    assert "already a prepared store" in capsys.readouterr().err
    assert prepare_main([str(tmp_path / "nowhere"), str(tmp_path / "x"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_training_reads_the_store_directly(store, tmp_path):
    cfg = load_config(REPO / "pretrain/configs/slicer.yaml", [
        "encoder.d=32", "encoder.channels=4", "data.batch_size=4", "data.num_workers=1",
        "objective.params.queue_size=16", "objective.params.n_clusters=4", "objective.params.instance_dim=8",
        "augment.mixup.memory=8", "augment.kmix.memory=8", "augment.kmix.r=2", "augment.kmix.k=2",
        "stats.min_files=7", "run.progress=false", "run.steps=2", "run.checkpoint_every=2",
        f"data.path={store}", f"run.out={tmp_path / 'run'}"])
    last = train(cfg)
    assert last.name == "step_00000002.pt"
    log = (tmp_path / "run" / "run.log").read_text()
    assert f"data: 7 files from {store}" in log and not (tmp_path / "run" / "header_scan.csv").exists()
