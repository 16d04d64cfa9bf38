"""No-learning reference for demo tasks: logistic regression on the mean and standard
deviation of 64 log-mel bands (25 ms / 10 ms), fit on train, accuracy on test.

    python benchmarks/logmel_probe.py demo_data_study real_sounds real_instruments
"""
import sys, json
import numpy as np, soundfile as sf, librosa
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.pipeline import make_pipeline
from eval_suites.hear_format.task import load_task
root = sys.argv[1]
for name in sys.argv[2:]:
    task = load_task(f"{root}/tasks/demo_{name}-v1-full")
    def feats(split):
        X, y = [], []
        for clip, labels in sorted(task.labels[split].items()):
            x, sr = sf.read(task.audio_path(split, clip), dtype="float32")
            m = np.log(librosa.feature.melspectrogram(y=x, sr=sr, n_fft=400, hop_length=160, n_mels=64) + 1e-6)
            X.append(np.concatenate([m.mean(1), m.std(1)])); y.append(labels[0])
        return np.array(X), np.array(y)
    Xtr, ytr = feats("train"); Xte, yte = feats("test")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(Xtr, ytr)
    print(name, "test acc", round(float((clf.predict(Xte) == yte).mean()), 3), "n_test", len(yte), "chance", round(1/len(set(ytr)),3))
