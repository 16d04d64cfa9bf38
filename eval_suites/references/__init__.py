"""Reference HEAR models that are not learned representations, for comparisons:
``eval_suites.references.logmel_stats`` (per-band log-mel mean and standard deviation)."""
