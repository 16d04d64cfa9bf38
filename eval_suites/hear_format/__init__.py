"""The HEAR 2021 task folder format: write, read and validate task folders (:mod:`.task`)."""
