"""The recorded development suite: HEAR tasks made only from recordings of real sound.

    python -m eval_suites.recorded --install     # install the packages (root; about 800 MB), build recorded_data/tasks
    python -m eval_suites run eval_suites/manifests/recorded.yaml

Eight scene tasks (voices: speakers, languages, letter languages, vowels; music; drums;
animal/household/instrument sounds; game effects) built offline from Debian packages that no
pretraining corpus of this project uses (:mod:`eval_suites.recorded.sources`), with splits by
prompt, object, track, kit, speaker or file so that no recording is heard in two splits
(:mod:`eval_suites.recorded.tasks`). It is the suite choices are made on (validation splits);
the synthesised suites (demo, study) are reported beside it. docs/recorded.md describes it.
"""
