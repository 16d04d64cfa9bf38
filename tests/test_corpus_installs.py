"""The real-audio corpus list (`python -m pretrain.debian_corpus`, `studies.learning_curves
--prepare-only`), issue 29: nothing installs without `--install`, a user's files in OUT are never
replaced, file names that are not UTF-8 and a binary files.txt get one line, not a traceback.

dpkg and apt-get are replaced by a fake that answers as they would (`FakeDebian`): what is
installed, `dpkg -L`, and `apt-get --print-uris`; any other apt-get call (update, install) is
recorded and refused, so a test can assert that nothing was installed. The audio files are
real files on disk.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pretrain import debian_corpus
from pretrain.data import find_audio_files

REAL_RUN = subprocess.run
ODD = os.fsdecode(b"caf\xe9_\xff.wav")  # a Latin-1 name: not UTF-8


class FakeDebian:
    """dpkg-query, dpkg -L and apt-get as seen by pretrain.debian_corpus; `apt_calls` records every
    apt-get call other than --print-uris (those would change the system)."""

    def __init__(self, installed: dict[str, list[str]]):
        self.installed = installed  # package -> the paths `dpkg -L` lists
        self.apt_calls: list[list[str]] = []

    def __call__(self, cmd, *args, **kwargs):
        cmd = list(cmd)
        if cmd[0] == "dpkg-query":
            found = cmd[-1] in self.installed
            return subprocess.CompletedProcess(cmd, 0 if found else 1, "install ok installed\t1.0-test" if found else "",
                                               "" if found else f"dpkg-query: no packages found matching {cmd[-1]}")
        if cmd[:2] == ["dpkg", "-L"]:
            return subprocess.CompletedProcess(cmd, 0, "\n".join(self.installed[cmd[2]]) + "\n", "")
        if cmd[0] == "apt-get" and "--print-uris" in cmd:
            return subprocess.CompletedProcess(cmd, 0, "'http://deb.example/pool/a_1_all.deb' a_1_all.deb 12000000 "
                                               "SHA256:00\n'http://deb.example/pool/b_1_all.deb' b_1_all.deb 345678 "
                                               "SHA256:11\n", "")
        if cmd[0] == "apt-get":
            self.apt_calls.append(cmd)  # `update` answers as done, anything else as refused
            return subprocess.CompletedProcess(cmd, 0 if cmd[1] == "update" else 100, "", "apt-get refused by the test")
        return REAL_RUN(cmd, *args, **kwargs)


@pytest.fixture
def package_audio(tmp_path) -> list[str]:
    """Two real audio files of a package, one named in Latin-1 bytes."""
    folder = tmp_path / "usr" / "share" / "pkg"
    folder.mkdir(parents=True)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)).astype(np.float32)
    sf.write(folder / "a.wav", tone, 16000)
    sf.write(folder / "b.wav", tone, 16000)
    os.rename(folder / "b.wav", os.path.join(folder, ODD))
    return [str(folder), str(folder / "a.wav"), os.path.join(folder, ODD)]


def test_a_missing_package_is_named_with_its_size_and_nothing_is_installed(tmp_path, monkeypatch, capsys):
    """Feeds `python -m pretrain.debian_corpus OUT --packages` a package that is not installed;
    expects exit 2, one line naming it, apt-get's download size and --install, no apt-get call
    (as root it used to run apt-get update and install at once), and nothing written to OUT."""
    fake = FakeDebian({})
    monkeypatch.setattr(subprocess, "run", fake)
    out = tmp_path / "real"
    assert debian_corpus.main([str(out), "--packages", "hear-slicer-test-missing"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not installed: hear-slicer-test-missing" in err, err
    assert "would download 12 MB in 2 package file(s)" in err and "Nothing was installed" in err, err
    assert "--install" in err and "sudo apt-get install -y" in err, err
    assert fake.apt_calls == [] and not out.exists()


def test_install_runs_apt_get_only_when_asked(tmp_path, monkeypatch, capsys):
    """With --install (as root) the install is run, after saying what and how large."""
    if os.geteuid() != 0:
        pytest.skip("--install runs apt-get only as root")
    fake = FakeDebian({})
    monkeypatch.setattr(subprocess, "run", fake)
    assert debian_corpus.main([str(tmp_path / "real"), "--packages", "hear-slicer-test-missing", "--install"]) == 2
    assert ["apt-get", "update", "-qq"] in fake.apt_calls
    assert fake.apt_calls[-1][:3] == ["apt-get", "install", "-y"] and fake.apt_calls[-1][-1] == "hear-slicer-test-missing"
    assert "installing 1 package(s) not installed: hear-slicer-test-missing; apt-get would download" in \
        capsys.readouterr().err


def test_the_study_prepare_stops_before_building_anything_when_packages_are_missing(tmp_path, monkeypatch, capsys):
    """Feeds `studies.learning_curves --prepare-only` no corpus list and none of the `real` preset's
    packages; expects exit 2 naming the packages, their download size and --install, no apt-get
    call and no demo data built (it ran apt-get install of about 1.3 GB after building the data)."""
    from studies import learning_curves

    fake = FakeDebian({})
    monkeypatch.setattr(subprocess, "run", fake)
    root, runs = tmp_path / "demo", tmp_path / "runs"
    assert learning_curves.main(["--prepare-only", "--preset", "tiny", "--root", str(root), "--runs", str(runs),
                                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{len(debian_corpus.PACKAGES)} package(s) not installed" in err, err
    assert "wesnoth-1.16-music" in err and "would download" in err and "--install" in err, err
    assert fake.apt_calls == [] and not root.exists() and not (runs / "real").exists()


def test_non_utf8_file_names_of_a_package_are_listed_as_their_bytes(tmp_path, monkeypatch, capsys, package_audio):
    """Feeds a package whose `dpkg -L` lists a real audio file named in Latin-1 bytes; expects exit 0,
    files.txt holding the name's bytes (pretrain reads it back to the same file) and the summary
    printed with a backslash escape (it died with UnicodeEncodeError writing files.txt)."""
    monkeypatch.setattr(subprocess, "run", FakeDebian({"pkg-odd": package_audio}))
    out = tmp_path / "real"
    assert debian_corpus.main([str(out), "--packages", "pkg-odd"]) == 0
    assert os.fsencode(package_audio[2]) in (out / "files.txt").read_bytes()
    assert [str(p) for p in find_audio_files(out / "files.txt")] == package_audio[1:]
    printed = capsys.readouterr().out
    assert "| pkg-odd | 1.0-test | 2 |" in printed
    # a second listing replaces what the first one wrote (its own files, recorded)
    assert debian_corpus.main([str(out), "--packages", "pkg-odd"]) == 0


@pytest.mark.parametrize("name", ["files.txt", "manifest.md"])
def test_a_users_files_in_out_are_never_replaced(tmp_path, monkeypatch, capsys, package_audio, name):
    """Feeds `debian_corpus OUT` an OUT holding a user's files.txt or manifest.md; expects exit 2, one line
    naming it, and every file of OUT unchanged (they were replaced without a word)."""
    monkeypatch.setattr(subprocess, "run", FakeDebian({"pkg-odd": package_audio}))
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text("my own list\n")
    assert debian_corpus.main([str(out), "--packages", "pkg-odd"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out / name} was not written by pretrain.debian_corpus" in err, err
    assert sorted(p.name for p in out.iterdir()) == [name] and (out / name).read_text() == "my own list\n"


def test_a_binary_corpus_list_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    """Feeds `studies.learning_curves --prepare-only` a --real folder whose files.txt is binary; expects
    exit 3 and one line naming it before any data is built (a UnicodeDecodeError traceback after
    building the study data)."""
    from studies import learning_curves

    monkeypatch.setattr(subprocess, "run", FakeDebian({}))
    real = tmp_path / "real"
    real.mkdir()
    (real / "files.txt").write_bytes(b"\x00\xff\xfe\x89PNG\r\n\x1a\n" + bytes(range(256)))
    root = tmp_path / "demo"
    assert learning_curves.main(["--prepare-only", "--preset", "tiny", "--root", str(root), "--runs",
                                 str(tmp_path / "runs"), "--real", str(real), "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{real / 'files.txt'} is not a list of file paths" in err, err
    assert not root.exists()
