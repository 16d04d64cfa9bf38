"""A small real-audio corpus for the pretrain tests (espeak-ng speech, fluidsynth instruments).

`make_corpus(root)` writes good files in several formats, rates and channel counts, plus the
bad files a trainer must survive (corrupt, empty, silent). The tests here check the
corpus itself and the data layer on it (decoding, skipping, sharding, determinism).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from eval_suites.synthetic.synth import Note, espeak, fluidsynth_render_many
from pretrain.data import (AudioCrops, DatasetError, ShardedInfiniteSampler, decode_audio, find_audio_files,
                           make_loader, scan_files)

SENTENCES = ["the quick brown fox", "jumps over the lazy dog", "seven green apples", "open the window please",
             "a bright morning sun", "music of the night"]
VOICES = ["en", "en+f3", "de", "fr"]
PROGRAMS = [0, 24, 40, 56, 73, 11]  # piano, nylon guitar, violin, trumpet, flute, vibraphone
BAD_FILES = ("corrupt.wav", "empty.wav", "silent.flac", "truncated.ogg")


def make_corpus(root: Path, n_speech: int = 8, n_music: int = 6) -> Path:
    """Write the corpus under root/audio (nested folders); returns that folder."""
    audio = root / "audio"
    (audio / "speech" / "deep").mkdir(parents=True, exist_ok=True)
    (audio / "music").mkdir(parents=True, exist_ok=True)
    for i in range(n_speech):
        x = espeak(SENTENCES[i % len(SENTENCES)], voice=VOICES[i % len(VOICES)], speed=140 + 10 * i, sample_rate=22050)
        folder = audio / "speech" / ("deep" if i % 2 else "")
        if i % 3 == 0:  # stereo wav at 22.05 kHz
            sf.write(folder / f"speech{i}.wav", np.stack([x, 0.5 * x], axis=1), 22050)
        elif i % 3 == 1:  # mono flac at 22.05 kHz
            sf.write(folder / f"speech{i}.flac", x, 22050)
        else:  # ogg vorbis
            sf.write(folder / f"speech{i}.ogg", x, 22050, format="OGG", subtype="VORBIS")
    clips = [[Note(PROGRAMS[i % len(PROGRAMS)], 48 + 5 * i + 4 * k, 100, 0.3 * k, 0.5) for k in range(4)]
             for i in range(n_music)]
    for i, x in enumerate(fluidsynth_render_many(clips, duration=1.6, sample_rate=44100)):
        sf.write(audio / "music" / f"music{i}.wav", x, 44100)
    (audio / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is not audio" * 3)
    sf.write(audio / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    sf.write(audio / "silent.flac", np.zeros(16000, dtype=np.float32), 16000)
    ogg = next(audio.rglob("speech2.ogg")).read_bytes()
    (audio / "truncated.ogg").write_bytes(ogg[: len(ogg) // 3])  # a real Ogg Vorbis file cut short
    return audio


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def test_find_and_scan(corpus, tmp_path):
    files = find_audio_files(corpus)
    names = {p.name for p in files}
    assert {"speech1.flac", "speech2.ogg", "speech0.wav", "music0.wav"} <= names  # recursive, all formats
    good, bad = scan_files(files)
    bad_names = {Path(p).name for p, _ in bad}
    assert {"corrupt.wav", "empty.wav", "truncated.ogg"} <= bad_names
    assert "silent.flac" in {p.name for p in good}  # only decoding finds silence
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},x\n" for p in files[:3]))
    assert find_audio_files(manifest) == files[:3]


def test_missing_or_empty_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        find_audio_files(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no audio files"):
        find_audio_files(tmp_path)
    with pytest.raises(DatasetError, match="data.path"):
        find_audio_files("")


def test_decode_mono_resampled(corpus):
    x = decode_audio(next(corpus.rglob("speech0.wav")), 16000)
    ref, sr = sf.read(next(corpus.rglob("speech0.wav")), dtype="float32")
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - len(ref) * 16000 / sr) <= 2
    for name, why in [("silent.flac", "silent"), ("corrupt.wav", "unreadable"), ("empty.wav", "empty")]:
        with pytest.raises(ValueError, match=why):
            decode_audio(corpus / name, 16000, silence_peak=1e-4)


def test_bad_files_are_replaced_and_reported(corpus):
    files = sorted(find_audio_files(corpus))
    ds = AudioCrops(files, 16000, 15200)
    i = [p.name for p in files].index("corrupt.wav")
    item = ds[(i, 0)]
    assert item["wave"].shape == (1, 15200) and item["wave"].abs().max() > 0
    assert item["skipped"] and Path(item["skipped"][0][0]).name == "corrupt.wav"


def test_sampler_shards_and_resumes():
    n, world = 11, 2
    streams = [ShardedInfiniteSampler(n, r, world, seed=3) for r in range(world)]
    first = [[next(it) for _ in range(6)] for it in map(iter, streams)]  # 6 = ceil(11 / 2): one epoch
    covered = {idx for part in first for idx, _ in part}
    assert covered == set(range(n))  # one epoch over both ranks covers every file
    resumed = iter(ShardedInfiniteSampler(n, 0, world, seed=3, start=4))
    full = iter(ShardedInfiniteSampler(n, 0, world, seed=3))
    full_items = [next(full) for _ in range(10)]
    assert [next(resumed) for _ in range(6)] == full_items[4:10]


def test_each_rank_gets_an_interleaved_share_not_a_contiguous_block():
    """Rank r of W processes takes positions r, r + W, r + 2W, ... of the one-process order of
    the epoch (DistributedSampler's interleaving, padded from the start), not a contiguous
    block: with W dividing the file count the ranks' streams, interleaved, are the one-process
    stream; otherwise each rank's files are those torch's DistributedSampler(shuffle=False)
    picks from that order. Crop seeds never repeat across ranks."""
    from torch.utils.data import DistributedSampler

    n = 12
    one = iter(ShardedInfiniteSampler(n, 0, 1, seed=5))
    order = [next(one)[0] for _ in range(n)]  # epoch 0 of one process: a permutation of the files
    assert sorted(order) == list(range(n)) and order != list(range(n))
    for world in (2, 3, 5):
        per_rank = -(-n // world)
        streams = [iter(ShardedInfiniteSampler(n, rank, world, seed=5)) for rank in range(world)]
        shares = [[next(s) for _ in range(per_rank)] for s in streams]  # epoch 0 of each rank
        for rank, share in enumerate(shares):
            picks = list(DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False))
            assert [i for i, _ in share] == [order[k] for k in picks], (world, rank)
        if n % world == 0:
            assert [i for step in zip(*shares) for i, _ in step] == order
        seeds = [c for share in shares for _, c in share]
        assert len(set(seeds)) == len(seeds)


def test_loader_is_deterministic_with_workers(corpus):
    files, _ = scan_files(find_audio_files(corpus))
    ds = AudioCrops(files, 16000, 15200)
    a = next(iter(make_loader(ds, 4, num_workers=2, seed=1))).wave
    b = next(iter(make_loader(ds, 4, num_workers=0, seed=1))).wave
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def _offset_in(x: np.ndarray, crop: np.ndarray, atol: float = 1e-5) -> int:
    """The start s with x[s:s+len(crop)] == crop (within atol: crops are read by seeking and
    resampled alone, see test_pretrain_data_scale.py), the crop lying inside x; else -1."""
    j = int(np.flatnonzero(np.abs(crop) > 1e-3)[0])  # an audible sample to anchor the search
    for s in np.flatnonzero(np.abs(x - crop[j]) <= atol) - j:
        if 0 <= s <= len(x) - len(crop) and np.allclose(x[s:s + len(crop)], crop, rtol=0, atol=atol):
            return int(s)
    return -1


def test_two_crops_per_item_are_different_offsets_of_the_same_file(corpus):
    files = sorted(p for p in find_audio_files(corpus) if p.name.startswith("speech"))
    n = 4000  # 0.25 s: every speech file is several times longer
    one, two = AudioCrops(files, 16000, n), AudioCrops(files, 16000, n, crops_per_item=2)
    offsets = []
    for index in range(len(files)):
        x = decode_audio(files[index], 16000)
        for seed in (0, 1, 2):
            pair = two[(index, seed)]["wave"].numpy()
            assert pair.shape == (2, n)
            a, b = _offset_in(x, pair[0]), _offset_in(x, pair[1])
            assert a >= 0 and b >= 0, f"both crops must be spans of {files[index].name}"
            offsets.append((a, b))
            # the first crop is the single-crop dataset's crop: V does not change what V = 1 sees
            np.testing.assert_array_equal(one[(index, seed)]["wave"].numpy()[0], pair[0])
            # deterministic in the item's crop seed
            np.testing.assert_array_equal(two[(index, seed)]["wave"].numpy(), pair)
    assert all(a != b for a, b in offsets), f"two crops of a file should start at different offsets: {offsets}"
    assert len({a for a, _ in offsets}) > len(files)  # offsets vary with the crop seed
